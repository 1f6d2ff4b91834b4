"""CheXpert (Stanford): ``train.csv`` and ``valid.csv`` with 1 / 0 / -1 / blank labels.

On-disk layout (``CheXpert-v1.0`` or ``CheXpert-v1.0-small``)::

    root/train.csv   Path, Sex, Age, Frontal/Lateral, AP/PA, <14 CheXpert labels>
    root/valid.csv   same columns
    root/train/patient00001/study1/view1_frontal.jpg

``Path`` starts with the release folder name (``CheXpert-v1.0-small/train/...``); it is resolved against
``root`` whatever the folder is called now. The view is the ``AP/PA`` column (``AP``, ``PA``, ``LL``, ``RL``),
or ``LATERAL`` for a lateral image without one. The patient is the ``patientNNNNN`` path component.
Items carry the subgroup fields (:mod:`~cxrkd_monai.prepare.subgroup_fields`) ``sex`` (``Sex``: Female /
Male; ``Unknown`` is left out), ``age`` (``Age``, years) and ``view`` (that view; ``FRONTAL`` for a frontal image
without ``AP/PA``), where the tables have them.

CheXpert ships no reports: items carry ``report: ""`` whatever ``empty_report`` says, for image-only
training (the VKD baseline) and evaluation. With ``official_split=True``, ``valid.csv`` is the validation split
and the ``train.csv`` patients are split into training and test by the renormalised fractions.

Labels follow the VKD authors' convention by default: a blank is a known 0 (``blank_policy="zeros"``) and
"No Finding" is derived, 1 exactly when no finding is positive (the CheXpert labeler writes it only as 1 or
blank). ``blank_policy="mask"`` makes blanks unknown in training and evaluation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from cxrkd_monai.prepare.base import ClassificationAdapter, DatasetFormatError, Record, read_csv
from cxrkd_monai.prepare.subgroup_fields import subgroup_fields

__all__ = ["CheXpertAdapter"]

TABLES = (("train.csv", ("training", "test")), ("valid.csv", "validation"))
_PATIENT = re.compile(r"^patient\d+$")


class CheXpertAdapter(ClassificationAdapter):
    """VKD datalist (image-only: empty reports) from CheXpert; see the module docstring for the layout.

    Args:
        root: the CheXpert folder holding ``train.csv`` and ``valid.csv``.
        **kwargs: :class:`ClassificationAdapter` options.

    Example::

        CheXpertAdapter("CheXpert-v1.0-small", uncertain_policy="ones").prepare("chexpert.json")
    """

    name = "chexpert"
    default_blank_policy = "zeros"
    derives_no_finding = True

    def records(self) -> Iterator[Record]:
        if not (self.root / "train.csv").is_file():
            raise DatasetFormatError(f"CheXpert table {str(self.root / 'train.csv')!r} does not exist.")
        for table, official in TABLES:
            path = self.root / table
            if not path.is_file():
                if self.official_split and official == "validation":
                    raise DatasetFormatError(f"official_split needs {str(path)!r}, which does not exist.")
                continue
            for row in read_csv(path, ("Path", "Frontal/Lateral", "AP/PA")):
                relative = PurePosixPath(row["Path"])
                parts = relative.parts
                if parts and parts[0] not in ("train", "valid"):
                    parts = parts[1:]
                patient = next((part for part in parts if _PATIENT.match(part)), None)
                if patient is None:
                    raise DatasetFormatError(f"{str(path)!r}: Path {row['Path']!r} names no patientNNNNN folder.")
                view = row["AP/PA"].strip() or row["Frontal/Lateral"].strip()
                if not self.view_accepted(view):
                    self.summary.skip("view_excluded", row["Path"])
                    continue
                try:
                    label, mask = self.harmoniser({k: v for k, v in row.items() if k in self.class_names})
                    subgroups = subgroup_fields(sex=row.get("Sex"), age=row.get("Age"), view=view)
                except ValueError as error:
                    raise DatasetFormatError(f"{str(path)!r}, {row['Path']}: {error}") from None
                item = {"image": str(Path(self.root, *parts)), "report": "", "label": label, "label_mask": mask}
                yield Record({**item, "patient_id": patient, **subgroups}, official)
