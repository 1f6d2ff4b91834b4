"""VinDr-CXR: DICOM images with local labels from several readers, fused into one box set per image.

On-disk layout (PhysioNet release)::

    root/annotations/annotations_train.csv   image_id, rad_id, class_name, x_min, y_min, x_max, y_max
    root/annotations/annotations_test.csv    same columns (consensus boxes of the test set)
    root/train/<image_id>.dicom
    root/test/<image_id>.dicom

Every image read has at least one row per reader (``No finding`` rows have empty coordinates). ``Rib fracture``
and ``Clavicle fracture`` boxes become ``rib_fracture`` and ``clavicle_fracture``; the other local labels
only tell that the image was read. An image with a fused fracture box is D_R, one without is D_N.

Box fusion (:func:`fuse_reader_boxes`): per image and class, readers' boxes are clustered greedily, each box
joining the cluster whose mean box overlaps it most with IoU >= ``iou_threshold`` and that holds no box of the
same reader yet; a cluster becomes one box with the mean coordinates and is kept when at least
``min_readers`` readers drew it (default 1: fractures are subtle and a single reader's box is kept). Points
are the fused boxes' centres. Coordinates are original DICOM pixels (x = column).

VinDr-CXR publishes no patient identifier; each image is its own patient. It holds frontal (PA) images only,
so the view filter does not apply. With ``official_split=True`` the test table is the test split and the
training table's images are split into training and validation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from monai.data.box_utils import box_iou

from cxrkd_monai.prepare.base import DatasetAdapter, DatasetFormatError, Record, read_csv
from cxrkd_monai.prepare.labels import FRACTURE_CLASSES
from cxrkd_monai.utils.fracture_subsets import fracture_subset

__all__ = ["VINDR_FRACTURE_CLASSES", "VinDrCxrAdapter", "fuse_reader_boxes"]

VINDR_FRACTURE_CLASSES = {"Rib fracture": "rib_fracture", "Clavicle fracture": "clavicle_fracture"}
TABLES = (
    ("annotations_train.csv", "train", ("training", "validation")),
    ("annotations_test.csv", "test", "test"),
)
COLUMNS = ("image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max")


def fuse_reader_boxes(
    boxes: Sequence[tuple[str, Sequence[float]]], iou_threshold: float = 0.4, min_readers: int = 1
) -> list[tuple[list[float], int]]:
    """Fuse one class's boxes from several readers into ``(mean box [x1, y1, x2, y2], number of readers)``.

    Args:
        boxes: ``(reader id, [x1, y1, x2, y2])`` pairs.
        iou_threshold: least IoU between a box and a cluster's mean box for the box to join it.
        min_readers: least number of distinct readers for a fused box to be kept.

    Example::

        fuse_reader_boxes([("R1", [0, 0, 10, 10]), ("R2", [1, 1, 11, 11]), ("R1", [50, 50, 60, 60])])
        # [([0.5, 0.5, 10.5, 10.5], 2), ([50.0, 50.0, 60.0, 60.0], 1)]
    """
    clusters: list[list[tuple[str, np.ndarray]]] = []
    for reader, box in sorted(boxes, key=lambda rb: (rb[0], tuple(rb[1]))):
        box = np.asarray(box, dtype=np.float64)
        best, best_iou = None, iou_threshold
        for cluster in clusters:
            if any(r == reader for r, _ in cluster):
                continue
            mean = np.mean([b for _, b in cluster], axis=0)
            iou = float(box_iou(box[None], mean[None])[0, 0])
            if iou >= best_iou:
                best, best_iou = cluster, iou
        if best is None:
            clusters.append([(reader, box)])
        else:
            best.append((reader, box))
    fused = [
        ([round(float(v), 2) for v in np.mean([b for _, b in cluster], axis=0)], len(cluster))
        for cluster in clusters
        if len(cluster) >= min_readers
    ]
    return sorted(fused, key=lambda fb: fb[0])


class VinDrCxrAdapter(DatasetAdapter):
    """AALS datalist from VinDr-CXR with fused reader boxes; see the module docstring for layout and policy.

    Args:
        root: the VinDr-CXR folder.
        iou_threshold, min_readers: box fusion settings, see :func:`fuse_reader_boxes`.
        **kwargs: :class:`DatasetAdapter` options.

    Example::

        VinDrCxrAdapter("vindr-cxr/1.0.0", official_split=True).prepare("vindr_fracture.json")
    """

    name = "vindr_cxr"
    task = "fracture"

    def __init__(self, root: str | Path, iou_threshold: float = 0.4, min_readers: int = 1, **kwargs) -> None:
        super().__init__(root, **kwargs)
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}.")
        if min_readers < 1:
            raise ValueError(f"min_readers must be at least 1, got {min_readers}.")
        self.iou_threshold = float(iou_threshold)
        self.min_readers = int(min_readers)

    def options(self) -> dict:
        return {**super().options(), "iou_threshold": self.iou_threshold, "min_readers": self.min_readers}

    def records(self) -> Iterator[Record]:
        tables = [(self.root / "annotations" / name, folder, split) for name, folder, split in TABLES]
        if not any(path.is_file() for path, _, _ in tables):
            folder = str(self.root / "annotations")
            raise DatasetFormatError(f"{folder!r} holds neither {TABLES[0][0]} nor {TABLES[1][0]}.")
        seen: set[str] = set()
        for path, folder, official in tables:
            if not path.is_file():
                continue
            reader_boxes: dict[str, dict[str, list]] = {}
            for row in read_csv(path, COLUMNS):
                per_class = reader_boxes.setdefault(row["image_id"], {name: [] for name in FRACTURE_CLASSES})
                name = VINDR_FRACTURE_CLASSES.get(row["class_name"].strip())
                if name is None:
                    continue
                try:
                    box = [float(row[c]) for c in ("x_min", "y_min", "x_max", "y_max")]
                except ValueError:
                    raise DatasetFormatError(
                        f"{str(path)!r}: {row['class_name']!r} box of image {row['image_id']} has coordinates "
                        f"{[row[c] for c in ('x_min', 'y_min', 'x_max', 'y_max')]}."
                    ) from None
                per_class[name].append((row["rad_id"], box))
            for image_id, per_class in reader_boxes.items():
                if image_id in seen:
                    self.summary.skip("duplicate_image_id", f"{folder}/{image_id}")
                    continue
                seen.add(image_id)
                yield Record(self._item(self.root / folder / f"{image_id}.dicom", image_id, per_class), official)

    def _item(self, image: Path, image_id: str, per_class: dict[str, list]) -> dict:
        boxes, points = [], []
        for name in FRACTURE_CLASSES:
            for (x1, y1, x2, y2), _ in fuse_reader_boxes(per_class[name], self.iou_threshold, self.min_readers):
                boxes.append([x1, y1, x2, y2, name])
                points.append([round((x1 + x2) / 2, 2), round((y1 + y2) / 2, 2), name])
        image_label = [float(any(b[4] == name for b in boxes)) for name in FRACTURE_CLASSES]
        return {
            "image": str(image),
            "image_label": image_label,
            "subset": fracture_subset(image_label, bool(boxes)),
            "boxes": boxes,
            "points": points,
            "patient_id": image_id,
        }
