"""A hospital's own data described by one CSV file, one row per image.

Columns (names configurable):

- ``image`` (required): image path, relative to ``root`` or absolute (DICOM, PNG, JPEG, NIfTI);
- ``patient_id`` (required);
- ``view`` (optional): view position (``PA``, ``AP``, ``LL``, ...); without the column no view filter applies;
- ``sex``, ``age``, ``body_part`` (optional): subgroup fields written into the items with ``view``
  (:mod:`~cxrkd_monai.prepare.subgroup_fields`): sex as F/Female, M/Male, O/Other; age in years or as a
  DICOM age (``063Y``); body part as named, lower-cased. A blank or ``Unknown`` cell is left out of the item;
  any other value outside the vocabulary is an error naming the file and line;
- ``split`` (optional): ``training``/``train``, ``validation``/``valid``/``val`` or ``test``, honoured with
  ``official_split=True``; a blank cell leaves the row to the seeded split;
- classification (:class:`GenericCsvAdapter`): ``report`` (optional, free text, its FINDINGS/IMPRESSION are
  kept) and one column per class name holding 1 / 0 / -1 / blank; a blank cell is masked by default
  (``blank_policy="mask"``: what a hospital's blank means is not known, so it is left out of training and
  evaluation; ``blank_policy="zeros"`` reads it as negative); a class without a column is masked and
  listed under ``classes_without_column`` in the summary options; without a ``report`` column every item
  has ``report: ""`` (image-only data) whatever ``empty_report`` says;
- fracture (:class:`GenericFractureCsvAdapter`): ``rib_fracture`` and ``clavicle_fracture`` (1 / 0), and
  optional ``boxes`` (JSON ``[[x1, y1, x2, y2, "rib_fracture"], ...]``) and ``points``
  (JSON ``[[x, y, "rib_fracture"], ...]``) in original pixels. A class with a box or point is positive.

Rows with an empty ``image`` or ``patient_id`` cell are skipped and counted (``image_path_empty``,
``patient_id_empty``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from cxrkd_monai.prepare.base import (
    ClassificationAdapter,
    DatasetAdapter,
    DatasetFormatError,
    Record,
    read_csv,
)
from cxrkd_monai.prepare.labels import FRACTURE_CLASSES
from cxrkd_monai.prepare.reports import extract_findings_impression
from cxrkd_monai.prepare.subgroup_fields import subgroup_fields
from cxrkd_monai.utils.fracture_subsets import fracture_subset

__all__ = ["GenericCsvAdapter", "GenericFractureCsvAdapter"]

logger = logging.getLogger(__name__)

SPLIT_ALIASES = {
    "training": "training",
    "train": "training",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "test": "test",
}


class _GenericCsvBase(DatasetAdapter):
    """Row loop shared by both CSV adapters: image, patient, view filter, subgroup fields and the split column."""

    def __init__(
        self,
        root: str | Path,
        csv_file: str | Path = "labels.csv",
        image_column: str = "image",
        patient_column: str = "patient_id",
        view_column: str = "view",
        split_column: str = "split",
        sex_column: str = "sex",
        age_column: str = "age",
        body_part_column: str = "body_part",
        **kwargs,
    ) -> None:
        super().__init__(root, **kwargs)
        self.csv_path = self.root / csv_file
        self.image_column = image_column
        self.patient_column = patient_column
        self.view_column = view_column
        self.split_column = split_column
        self.subgroup_columns = {
            "sex": sex_column, "age": age_column, "view": view_column, "body_part": body_part_column
        }  # fmt: skip
        self.columns: list[str] = []

    def _rows(self, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, str], str, dict, str | None]]:
        """``(line number, row, absolute image path, patient fields, official split)`` of each row kept; the
        patient fields are ``patient_id`` and the subgroup fields the row has."""
        rows = read_csv(self.csv_path, (self.image_column, self.patient_column, *required))
        self.columns = list(rows[0]) if rows else []
        for line, row in enumerate(rows, start=2):
            image, patient = (row[self.image_column] or "").strip(), (row[self.patient_column] or "").strip()
            if not image:
                self.summary.skip("image_path_empty", f"{self.csv_path.name}:{line}")
                continue
            if not patient:
                self.summary.skip("patient_id_empty", f"{self.csv_path.name}:{line}")
                continue
            if self.view_column in row and not self.view_accepted(row[self.view_column] or ""):
                self.summary.skip("view_excluded", image)
                continue
            split = (row.get(self.split_column) or "").strip().lower()
            if split and split not in SPLIT_ALIASES:
                raise DatasetFormatError(
                    f"{str(self.csv_path)!r} line {line}: {self.split_column} {split!r} is not one of "
                    f"{sorted(SPLIT_ALIASES)}."
                )
            try:
                subgroups = subgroup_fields(**{key: row.get(column) for key, column in self.subgroup_columns.items()})
            except ValueError as error:
                raise DatasetFormatError(f"{str(self.csv_path)!r} line {line}: {error}.") from None
            yield line, row, str(self.root / image), {"patient_id": patient, **subgroups}, SPLIT_ALIASES.get(split)


class GenericCsvAdapter(_GenericCsvBase, ClassificationAdapter):
    """VKD datalist from one CSV; see the module docstring for the columns.

    Args:
        root: folder the image paths are relative to.
        csv_file: the CSV, relative to ``root`` or absolute.
        image_column, patient_column, view_column, split_column, report_column: column names.
        sex_column, age_column, body_part_column: names of the optional subgroup columns.
        **kwargs: :class:`ClassificationAdapter` options.

    Example::

        GenericCsvAdapter("hospital", csv_file="cxr.csv", class_names=["Pneumothorax"]).prepare("hospital.json")
    """

    name = "generic_csv"
    default_blank_policy = "mask"

    def __init__(self, root: str | Path, report_column: str = "report", **kwargs) -> None:
        super().__init__(root, **kwargs)
        self.report_column = report_column
        self.classes_without_column: list[str] = []

    def options(self) -> dict:
        return {**super().options(), "classes_without_column": self.classes_without_column}

    def records(self) -> Iterator[Record]:
        checked_columns = False
        for line, row, image, patient_fields, split in self._rows():
            if not checked_columns:
                checked_columns = True
                self.classes_without_column = [name for name in self.class_names if name not in self.columns]
                if self.classes_without_column:
                    logger.warning(
                        "%s has no column for class(es) %s; they are masked.",
                        self.csv_path,
                        self.classes_without_column,
                    )
            try:
                label, mask = self.harmoniser({k: v for k, v in row.items() if k in self.class_names})
            except ValueError as error:
                raise DatasetFormatError(f"{str(self.csv_path)!r} line {line}: {error}") from None
            report = ""
            if self.report_column in row:
                report = extract_findings_impression(row[self.report_column])
                if not self.report_kept(report, image):
                    continue
            item = {"image": image, "report": report, "label": label, "label_mask": mask}
            yield Record({**item, **patient_fields}, split)


class GenericFractureCsvAdapter(_GenericCsvBase):
    """AALS datalist from one CSV; see the module docstring for the columns.

    Args: as :class:`GenericCsvAdapter`, with ``boxes_column`` and ``points_column`` instead of the report and
    label options.

    Example::

        GenericFractureCsvAdapter("hospital", csv_file="fractures.csv").prepare("hospital_fracture.json")
    """

    name = "generic_fracture_csv"
    task = "fracture"

    def __init__(self, root: str | Path, boxes_column: str = "boxes", points_column: str = "points", **kwargs) -> None:
        super().__init__(root, **kwargs)
        self.boxes_column = boxes_column
        self.points_column = points_column

    def records(self) -> Iterator[Record]:
        for line, row, image, patient_fields, split in self._rows(FRACTURE_CLASSES):
            boxes = self._annotations(row, self.boxes_column, 5, line)
            points = self._annotations(row, self.points_column, 3, line)
            image_label = []
            for name in FRACTURE_CLASSES:
                cell = (row[name] or "").strip()
                if cell not in ("0", "1", "0.0", "1.0"):
                    raise DatasetFormatError(f"{str(self.csv_path)!r} line {line}: {name} {cell!r} is not 1 or 0.")
                annotated = any(a[-1] == name for a in boxes + points)
                image_label.append(float(float(cell) == 1.0 or annotated))
            item = {
                "image": image,
                "image_label": image_label,
                "subset": fracture_subset(image_label, bool(boxes or points)),
                "boxes": boxes,
                "points": points,
            }
            yield Record({**item, **patient_fields}, split)

    def _annotations(self, row: dict[str, str], column: str, length: int, line: int) -> list[list]:
        cell = (row.get(column) or "").strip()
        if not cell:
            return []
        try:
            annotations = json.loads(cell)
            valid = isinstance(annotations, list) and all(
                isinstance(a, list) and len(a) == length and a[-1] in FRACTURE_CLASSES for a in annotations
            )
        except json.JSONDecodeError:
            valid = False
        if not valid:
            raise DatasetFormatError(
                f"{str(self.csv_path)!r} line {line}: {column} {cell!r} is not a JSON list of "
                f"[{'x1, y1, x2, y2' if length == 5 else 'x, y'}, class] with class in {FRACTURE_CLASSES}."
            )
        return [[*(float(v) for v in a[:-1]), a[-1]] for a in annotations]
