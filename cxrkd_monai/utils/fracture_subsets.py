"""The three training subsets of the semi-supervised fracture detector (AALS, Wang et al. 2021), defined once.

- ``D_R``: region-annotated images, whose fractures carry boxes or points;
- ``D_P``: record-positive images, whose record names a fracture type but which carry no region;
- ``D_N``: record-negative images.

A fracture datalist item names its subset under ``subset``; ``EncodeFractureAnnotationsd`` turns it into
``subset_index``, the position in :data:`FRACTURE_SUBSETS`.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["FRACTURE_SUBSETS", "RECORD_NEGATIVE", "RECORD_POSITIVE", "REGION_ANNOTATED", "fracture_subset"]

REGION_ANNOTATED = "D_R"
RECORD_POSITIVE = "D_P"
RECORD_NEGATIVE = "D_N"
FRACTURE_SUBSETS = (REGION_ANNOTATED, RECORD_POSITIVE, RECORD_NEGATIVE)


def fracture_subset(image_label: Sequence[float], has_regions: bool) -> str:
    """The subset of an image: ``D_R`` with regions, else ``D_P`` if any type is record-positive, else ``D_N``.

    Args:
        image_label: the image-level record, one value per fracture type.
        has_regions: whether any fracture of the image has a box or a point.
    """
    if has_regions:
        return REGION_ANNOTATED
    return RECORD_POSITIVE if any(image_label) else RECORD_NEGATIVE
