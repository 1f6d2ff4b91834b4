"""Batch collation for items that carry a variable number of annotations."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from monai.data import list_data_collate

__all__ = ["collate_with_annotations"]


def collate_with_annotations(
    batch: Sequence[dict[Hashable, Any] | list[dict[Hashable, Any]]],
    annotation_keys: Sequence[str] = ("boxes", "points"),
) -> dict[Hashable, Any]:
    """Collate like :func:`monai.data.list_data_collate`, but keep ragged annotations as per-item lists.

    Boxes and points differ in number from image to image, so they cannot be stacked. Under each key of
    ``annotation_keys`` the batch holds a list with one entry per item (``None`` where an item lacks the
    key); every other key is collated by MONAI. Items that a transform expanded into lists (e.g. several
    crops per image) are flattened first, exactly as ``list_data_collate`` does.

    Args:
        batch: the items of one batch, each a dict (or a list of dicts).
        annotation_keys: keys whose values are kept as lists, e.g. ``(N_i, 5)`` box arrays.

    Returns:
        a dict with stacked tensors (``image``: ``(B, C, *S)``, ...) and, per annotation key, a list of
        ``B`` arrays.

    Example::

        >>> loader = DataLoader(dataset, batch_size=4, collate_fn=collate_with_annotations)
        >>> batch = next(iter(loader))
        >>> batch["image"].shape, len(batch["boxes"]), batch["boxes"][0].shape
        (torch.Size([4, 1, 512, 512]), 4, (2, 5))
    """
    items = [item for entry in batch for item in entry] if isinstance(batch[0], list) else list(batch)
    present = [key for key in annotation_keys if any(key in item for item in items)]
    annotations = {key: [item.get(key) for item in items] for key in present}
    collated = list_data_collate([{k: v for k, v in item.items() if k not in present} for item in items])
    collated.update(annotations)
    return collated
