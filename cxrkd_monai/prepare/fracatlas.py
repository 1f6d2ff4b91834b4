"""FracAtlas: real musculoskeletal radiographs with fracture boxes (Abedeen et al., Scientific Data 2023).

On-disk layout (a FracAtlas copy with the COCO boxes flattened to CSV)::

    root/images/IMG0000025.jpg
    root/labels.csv   image_id, image, hand, leg, hip, shoulder, ..., multiscan, fractured, fracture_count,
                      frontal, lateral, oblique, width, height, ...    (one row per image)
    root/boxes.csv    image, x_min, y_min, x_max, y_max, label       (pixels of the stored image; label "fracture")

Labels. FracAtlas has one finding, ``fracture``. Every fracture is given the type ``fracture_class`` of
``class_names``; by default both are ``fracture``, and the bundle is run with ``--class_names "['fracture']"``
(its class list, and so its number of output maps, comes from that config value). To train the bundle's
default chest types unchanged, pass ``class_names=("rib_fracture", "clavicle_fracture")`` and a
``fracture_class``: every other type is then recorded as absent, which is true of these images. An image is
record-positive when ``fractured`` is 1, ``fracture_count`` is above 0 or it has a box; rows whose
``fractured`` flag disagrees with their boxes are counted in the summary under ``label_conflicts``.

Subsets. The split is made first. Validation and test keep every box (FROC needs them). Among the training
positives, a seeded ``annotated_fraction`` keeps its boxes and points (D_R); the others lose them and become
D_P, the record-positive images without regions of the AALS method. Negatives are D_N. A positive image
without any box (none in FracAtlas as published) cannot be scored by FROC, so its group is trained on only.

Patients. FracAtlas publishes no patient ids (``multiscan`` only flags images of a patient scanned more than
once). The views of one study sit at consecutive image numbers with the same body-part flags and original
size (e.g. ``IMG0000058``/``IMG0000059``, frontal and lateral of one hand), so each such run of images is one
group, named after its first image, and the split is made over groups, stratified by whether a group has a
fracture. A patient whose scans are not consecutive cannot be found and may span splits.

Subgroup fields (:mod:`~cxrkd_monai.prepare.subgroup_fields`): ``body_part`` is the flagged body parts,
joined with ``+`` in the order hand, leg, hip, shoulder (``"hand+shoulder"`` for an image showing both), and
``view`` the flagged projections in upper case, joined the same way (``"FRONTAL"``, ``"FRONTAL+LATERAL"``); a
row without any flag leaves the field out. FracAtlas records neither sex nor age.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrkd_monai.prepare.base import DatasetAdapter, DatasetFormatError, Record, read_csv
from cxrkd_monai.prepare.splits import split_patients
from cxrkd_monai.prepare.subgroup_fields import joined_names, subgroup_fields
from cxrkd_monai.utils.fracture_subsets import fracture_subset

__all__ = ["FracAtlasAdapter", "group_consecutive_studies"]

logger = logging.getLogger(__name__)

BODY_PARTS = ("hand", "leg", "hip", "shoulder")
PROJECTIONS = ("frontal", "lateral", "oblique")
LABEL_COLUMNS = (
    "image_id", "image", *BODY_PARTS, "fractured", "fracture_count", *PROJECTIONS,
    "orig_width", "orig_height", "width", "height",
)  # fmt: skip
BOX_COLUMNS = ("image", "x_min", "y_min", "x_max", "y_max", "label")


@dataclass
class _Image:
    row: dict[str, str]
    number: int
    boxes: list[list[float]]

    @property
    def positive(self) -> bool:
        return self.row["fractured"] == "1" or int(self.row["fracture_count"] or 0) > 0 or bool(self.boxes)


def _image_number(image_id: str, path: Path) -> int:
    digits = "".join(ch for ch in Path(image_id).stem if ch.isdigit())
    if not digits:
        raise DatasetFormatError(f"{str(path)!r}: image_id {image_id!r} holds no image number.")
    return int(digits)


def group_consecutive_studies(images: Sequence[tuple[int, tuple]]) -> list[int]:
    """Group index per image: runs of consecutive image numbers that share a study key form one group.

    Args:
        images: ``(image_number, study_key)`` per image, in any order.

    Returns:
        for each input image, the index of its group; groups are numbered in image-number order.

    Example::

        group_consecutive_studies([(58, "hand"), (59, "hand"), (60, "leg"), (62, "leg")])  # [0, 0, 1, 2]
    """
    order = sorted(range(len(images)), key=lambda i: images[i][0])
    groups = [0] * len(images)
    group = -1
    for rank, index in enumerate(order):
        previous = images[order[rank - 1]] if rank else None
        number, key = images[index]
        if previous is None or number - previous[0] != 1 or key != previous[1]:
            group += 1
        groups[index] = group
    return groups


class FracAtlasAdapter(DatasetAdapter):
    """AALS datalist from FracAtlas; see the module docstring for the layout, labels, subsets and grouping.

    Args:
        root: the folder holding ``labels.csv``, ``boxes.csv`` and ``images/``.
        class_names: the datalist's fracture types (the bundle's ``class_names``).
        fracture_class: the type every FracAtlas fracture is given; default the first of ``class_names``.
        annotated_fraction: fraction of the training positives that keep their boxes (D_R); the rest are D_P.
        views: projections kept, among ``frontal``, ``lateral``, ``oblique`` (an image showing several is kept
            when one of them is); ``None``/``"all"`` (default) keeps all.
        **kwargs: :class:`DatasetAdapter` options (``fractions``, ``seed``, ``check_images``). FracAtlas has no
            official split, so ``official_split`` does not apply.

    Example::

        FracAtlasAdapter("fracatlas", annotated_fraction=0.3, seed=0).prepare("fracatlas/datalist_fracture.json")
    """

    name = "fracatlas"
    task = "fracture"

    def __init__(
        self,
        root: str | Path,
        class_names: str | Sequence[str] = ("fracture",),
        fracture_class: str | None = None,
        annotated_fraction: float = 0.3,
        views: str | Sequence[str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(root, views=views, **kwargs)
        self.label_conflicts = 0
        names = class_names.split(",") if isinstance(class_names, str) else list(class_names)
        self._class_names = tuple(str(name).strip() for name in names if str(name).strip())
        if not self._class_names or len(set(self._class_names)) != len(self._class_names):
            raise ValueError(f"class_names must be distinct non-empty names, got {class_names!r}.")
        self.fracture_class = self._class_names[0] if fracture_class is None else fracture_class
        if self.fracture_class not in self._class_names:
            raise ValueError(f"fracture_class {self.fracture_class!r} is not one of class_names {self._class_names}.")
        if not 0.0 <= float(annotated_fraction) <= 1.0:
            raise ValueError(f"annotated_fraction must lie in [0, 1], got {annotated_fraction}.")
        self.annotated_fraction = float(annotated_fraction)
        # The adapter makes its own split (it needs it to choose D_R among the training positives) and hands
        # it to the base class as the split each record must go to.
        self.official_split = True

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._class_names

    def options(self) -> dict:
        return {
            **super().options(),
            "official_split": False,
            "class_names": list(self.class_names),
            "fracture_class": self.fracture_class,
            "annotated_fraction": self.annotated_fraction,
        }

    def records(self) -> Iterator[Record]:
        images = self._read_images()
        groups = group_consecutive_studies(
            [(image.number, tuple(image.row[c] for c in (*BODY_PARTS, "orig_width", "orig_height")))
             for image in images]
        )  # fmt: skip
        group_ids: dict[int, str] = {}
        for index in sorted(range(len(images)), key=lambda i: images[i].number):
            group_ids.setdefault(groups[index], Path(images[index].row["image_id"]).stem)
        split_of_group = {g: "training" for g, image in zip(groups, images) if image.positive and not image.boxes}
        positive_groups = {g for g, image in zip(groups, images) if image.positive} - set(split_of_group)
        for stratum in (positive_groups, set(groups) - positive_groups - set(split_of_group)):
            names = {group_ids[g]: g for g in stratum}
            for name, split in split_patients(sorted(names), self.fractions, self.seed).items():
                split_of_group[names[name]] = split
        annotated = self._choose_annotated(
            [i for i, image in enumerate(images) if image.positive and split_of_group[groups[i]] == "training"]
        )
        for index, (image, group) in enumerate(zip(images, groups)):
            split = split_of_group[group]
            keep_boxes = not image.positive or split != "training" or index in annotated
            yield Record(self._item(image, group_ids[group], keep_boxes), split)

    def _choose_annotated(self, training_positives: list[int]) -> set[int]:
        count = int(round(self.annotated_fraction * len(training_positives)))
        order = np.random.default_rng(self.seed).permutation(len(training_positives))
        return {training_positives[i] for i in order[:count]}

    def _read_images(self) -> list[_Image]:
        labels_path, boxes_path = self.root / "labels.csv", self.root / "boxes.csv"
        boxes: dict[str, list[list[float]]] = {}
        for row in read_csv(boxes_path, BOX_COLUMNS):
            if row["label"].strip().lower() != "fracture":
                raise DatasetFormatError(
                    f"{str(boxes_path)!r}: box label {row['label']!r} of {row['image']!r} is not 'fracture'."
                )
            boxes.setdefault(row["image"], []).append([float(row[c]) for c in BOX_COLUMNS[1:5]])
        images, conflicts = [], 0
        for row in read_csv(labels_path, LABEL_COLUMNS):
            if not self._projection_kept(row):
                self.summary.skip("view_not_selected", row["image"])
                continue
            image = _Image(row, _image_number(row["image_id"], labels_path), boxes.pop(row["image"], []))
            size = (float(row["width"]), float(row["height"]))
            for box in image.boxes:
                if not (0 <= box[0] < box[2] <= size[0] and 0 <= box[1] < box[3] <= size[1]):
                    raise DatasetFormatError(
                        f"{str(boxes_path)!r}: box {box} of {row['image']!r} is empty or outside its {size} image."
                    )
            conflicts += (row["fractured"] == "1") != bool(image.boxes)
            images.append(image)
        for image_path, orphan in boxes.items():
            self.summary.skip("box_of_unlisted_or_unselected_image", image_path, len(orphan))
        self.label_conflicts = conflicts
        if conflicts:
            logger.warning("fracatlas: %d image(s) whose 'fractured' flag disagrees with their boxes.", conflicts)
        return images

    def _summarise(self, datalist: dict, out: Path) -> dict:
        return {**super()._summarise(datalist, out), "label_conflicts": self.label_conflicts}

    def _projection_kept(self, row: dict[str, str]) -> bool:
        if self.views is None:
            return True
        return any(row[name] == "1" and name.upper() in self.views for name in PROJECTIONS)

    def _item(self, image: _Image, patient_id: str, keep_boxes: bool) -> dict:
        boxes = [[*box, self.fracture_class] for box in image.boxes] if keep_boxes else []
        image_label = [float(image.positive and name == self.fracture_class) for name in self.class_names]
        return {
            "image": str(self.root / image.row["image"]),
            "image_label": image_label,
            "subset": fracture_subset([image.positive], bool(boxes)),
            "boxes": boxes,
            "points": [[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[4]] for b in boxes],
            "patient_id": patient_id,
            **subgroup_fields(
                view=joined_names(name.upper() for name in PROJECTIONS if image.row[name] == "1"),
                body_part=joined_names(name for name in BODY_PARTS if image.row[name] == "1"),
            ),
        }
