"""MIMIC-CXR-JPG (images, CheXpert labels, metadata, official split) with the MIMIC-CXR report text files.

On-disk layout (as PhysioNet ships it; every table may also be ``.csv.gz``)::

    root/mimic-cxr-2.0.0-chexpert.csv    subject_id, study_id, <14 CheXpert labels: 1, 0, -1, blank>
    root/mimic-cxr-2.0.0-metadata.csv    dicom_id, subject_id, study_id, ViewPosition, ...
    root/mimic-cxr-2.0.0-split.csv       dicom_id, study_id, subject_id, split (train / validate / test)
    root/files/p10/p10000032/s50414267/<dicom_id>.jpg
    reports_dir/files/p10/p10000032/s50414267.txt   (MIMIC-CXR reports; reports_dir defaults to root)

One item per image; the study's labels and report are shared by its images. The patient is the subject. Each
item carries ``view``, the image's ``ViewPosition`` (``PA``, ``AP``, ``LATERAL``, ``LL``, ``AP AXIAL``, ...; a
blank one is left out), as a subgroup field (:mod:`~cxrkd_monai.prepare.subgroup_fields`). Sex and age
live in MIMIC-IV's ``patients.csv``, which is not read.

Labels follow the VKD authors' convention by default: a blank (not mentioned) is a known 0
(``blank_policy="zeros"``) and "No Finding" is derived, 1 exactly when no finding is positive (the CheXpert
labeler writes it only as 1 or blank). ``blank_policy="mask"`` makes blanks unknown in training and evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from cxrkd_monai.prepare.base import ClassificationAdapter, DatasetFormatError, Record, find_table, read_csv
from cxrkd_monai.prepare.reports import extract_findings_impression
from cxrkd_monai.prepare.subgroup_fields import subgroup_fields

__all__ = ["MimicCxrAdapter"]

OFFICIAL_SPLITS = {"train": "training", "validate": "validation", "test": "test"}


class MimicCxrAdapter(ClassificationAdapter):
    """VKD datalist from MIMIC-CXR-JPG; see the module docstring for the layout.

    Args:
        root: the MIMIC-CXR-JPG folder.
        reports_dir: the folder holding ``files/pXX/pSUBJECT/sSTUDY.txt`` (default ``root``).
        **kwargs: :class:`ClassificationAdapter` options.

    Skips (counted): ``study_without_images`` (a labelled study with no metadata row, counted per study),
    ``labels_missing``, ``view_excluded``, ``report_file_missing``, ``report_empty``, and the shared ones.

    Example::

        MimicCxrAdapter("mimic-cxr-jpg", official_split=True).prepare("mimic_vkd.json")
    """

    name = "mimic_cxr"
    default_blank_policy = "zeros"
    derives_no_finding = True

    def __init__(self, root: str | Path, reports_dir: str | Path | None = None, **kwargs) -> None:
        super().__init__(root, **kwargs)
        self.reports_dir = Path(reports_dir) if reports_dir is not None else self.root

    def records(self) -> Iterator[Record]:
        labels_path = find_table(self.root, "mimic-cxr-2.0.0-chexpert.csv")
        metadata_path = find_table(self.root, "mimic-cxr-2.0.0-metadata.csv")
        labels: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
        for row in read_csv(labels_path, ("subject_id", "study_id")):
            key = (row["subject_id"], row["study_id"])
            if key in labels:
                raise DatasetFormatError(f"{str(labels_path)!r} has study s{key[1]} twice.")
            try:
                labels[key] = self.harmoniser({k: v for k, v in row.items() if k in self.class_names})
            except ValueError as error:
                raise DatasetFormatError(f"{str(labels_path)!r}, study s{key[1]}: {error}") from None
        official = {}
        if self.official_split:
            split_path = find_table(self.root, "mimic-cxr-2.0.0-split.csv")
            for row in read_csv(split_path, ("dicom_id", "split")):
                if row["split"] not in OFFICIAL_SPLITS:
                    raise DatasetFormatError(f"{str(split_path)!r}: split {row['split']!r} is not one of "
                                             f"{sorted(OFFICIAL_SPLITS)}.")
                official[row["dicom_id"]] = OFFICIAL_SPLITS[row["split"]]

        studies_with_images = set()
        reports: dict[tuple[str, str], str | None] = {}
        for row in read_csv(metadata_path, ("dicom_id", "subject_id", "study_id", "ViewPosition")):
            subject, study, dicom_id = row["subject_id"], row["study_id"], row["dicom_id"]
            studies_with_images.add((subject, study))
            if (subject, study) not in labels:
                self.summary.skip("labels_missing", dicom_id)
                continue
            if not self.view_accepted(row["ViewPosition"]):
                self.summary.skip("view_excluded", dicom_id)
                continue
            if (subject, study) not in reports:
                reports[(subject, study)] = self._read_report(subject, study)
            report = reports[(subject, study)]
            if report is None:
                if not self.report_kept("", dicom_id, reason="report_file_missing"):
                    continue
                report = ""
            elif not self.report_kept(report, dicom_id):
                continue
            label, mask = labels[(subject, study)]
            folder = self.root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
            item = {
                "image": str(folder / f"{dicom_id}.jpg"),
                "report": report,
                "label": label,
                "label_mask": mask,
                "patient_id": f"p{subject}",
                **subgroup_fields(view=row["ViewPosition"]),
            }
            yield Record(item, official.get(dicom_id))
        for subject, study in sorted(set(labels) - studies_with_images):
            self.summary.skip("study_without_images", f"p{subject}/s{study}")

    def _read_report(self, subject: str, study: str) -> str | None:
        path = self.reports_dir / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
        if not path.is_file():
            return None
        return extract_findings_impression(path.read_text(encoding="utf-8", errors="replace"))
