"""OpenI / Indiana University chest X-ray collection: reports, MeSH-coded problems and PNG images.

Two on-disk layouts are read (the first found wins):

- the CSV repackaging::

      root/indiana_reports.csv       uid, MeSH, Problems, image, indication, comparison, findings, impression
      root/indiana_projections.csv   uid, filename, projection (Frontal / Lateral)
      root/images/images_normalized/<filename>            (image_dir)

- the original release::

      root/ecgen-radiology/<n>.xml   AbstractText Label="FINDINGS" / "IMPRESSION", MeSH major/minor,
                                     parentImage id="CXR1_1_IM-0001-3001"
      root/NLMCXR_png/CXR1_1_IM-0001-3001.png                (image_dir)

  The XML carries no view position. With a view filter on, give ``projections`` (an
  ``indiana_projections.csv``, whose ``1_IM-0001-3001.dcm.png`` names the same images); PA and AP select the
  ``Frontal`` images, LL/RL/LATERAL the ``Lateral`` ones.

Each item carries ``view``, its projection in upper case (``FRONTAL`` or ``LATERAL``), where known, as a subgroup
field (:mod:`~cxrkd_monai.prepare.subgroup_fields`). The collection is de-identified: neither layout
records the patient's sex or age.

Labels come from the manually coded MeSH problems (the part of each ``;``-separated MeSH entry before the
first ``/``). The coding lists every problem seen, so for a class with a mapping the absence of its terms is
a known negative (no value is ever blank, so ``blank_policy`` changes nothing here); a class without a mapping
(:data:`MESH_TO_CHEXPERT`) is masked. Studies coded
``No Indexing`` were not coded and are skipped (``mesh_not_indexed``). The collection has no patient ids;
each study is its own patient (``CXR<uid>``).

Fracture labels (:class:`OpenIFractureAdapter`): ``Fractures, Bone/ribs/...`` is a rib fracture and
``Fractures, Bone/clavicle/...`` a clavicle fracture (D_P); a fracture of another named bone (vertebrae,
sternum, humerus, ...) says nothing of ribs or clavicles; a bare ``Fractures, Bone`` without a site cannot be
assigned and the study is skipped (``fracture_site_unspecified``); a study without fracture is D_N.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cxrkd_monai.prepare.base import (
    ClassificationAdapter,
    DatasetAdapter,
    DatasetFormatError,
    PrepareSummary,
    Record,
    read_csv,
)
from cxrkd_monai.prepare.reports import report_from_sections
from cxrkd_monai.prepare.subgroup_fields import subgroup_fields
from cxrkd_monai.utils.fracture_subsets import fracture_subset

__all__ = ["MESH_TO_CHEXPERT", "OpenIAdapter", "OpenIFractureAdapter", "OpenIStudy", "read_openi_studies"]

MESH_TO_CHEXPERT = {
    "No Finding": ("normal",),
    "Cardiomegaly": ("cardiomegaly",),
    "Lung Opacity": ("opacity", "infiltrate", "airspace disease"),
    "Lung Lesion": ("nodule", "mass"),
    "Edema": ("pulmonary edema",),
    "Consolidation": ("consolidation",),
    "Pneumonia": ("pneumonia",),
    "Atelectasis": ("pulmonary atelectasis",),
    "Pneumothorax": ("pneumothorax", "hydropneumothorax"),
    "Pleural Effusion": ("pleural effusion",),
    "Fracture": ("fractures, bone",),
    "Support Devices": ("catheters, indwelling", "implanted medical device", "medical device", "tube, inserted"),
}
"""CheXpert class -> MeSH problem terms (lower case) that make it positive. Enlarged Cardiomediastinum and
Pleural Other have no unambiguous MeSH problem and are masked."""

NOT_INDEXED = "no indexing"
FRACTURE_TERM = "fractures, bone"


@dataclass
class OpenIStudy:
    """One report with its MeSH entries and its images as ``(path, projection)`` (projection may be ``""``)."""

    uid: str
    mesh: list[str]
    findings: str
    impression: str
    images: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def problems(self) -> set[str]:
        return {entry.split("/")[0].strip().lower() for entry in self.mesh if entry.strip()}


def read_openi_studies(
    root: Path, summary: PrepareSummary, image_dir: str | None = None, projections: str | Path | None = None
) -> list[OpenIStudy]:
    """The studies of either OpenI layout under ``root``; images without a report are counted in ``summary``."""
    if (root / "indiana_reports.csv").is_file():
        return _read_csv_layout(root, summary, image_dir or "images/images_normalized")
    if (root / "ecgen-radiology").is_dir():
        return _read_xml_layout(root, summary, image_dir or "NLMCXR_png", projections)
    raise DatasetFormatError(
        f"{str(root)!r} holds neither indiana_reports.csv nor an ecgen-radiology/ folder of OpenI report XML."
    )


def _read_csv_layout(root: Path, summary: PrepareSummary, image_dir: str) -> list[OpenIStudy]:
    studies = {}
    reports_path = root / "indiana_reports.csv"
    for row in read_csv(reports_path, ("uid", "MeSH", "findings", "impression")):
        if row["uid"] in studies:
            raise DatasetFormatError(f"{str(reports_path)!r} has uid {row['uid']!r} twice.")
        studies[row["uid"]] = OpenIStudy(row["uid"], row["MeSH"].split(";"), row["findings"], row["impression"])
    for row in read_csv(root / "indiana_projections.csv", ("uid", "filename", "projection")):
        if row["uid"] not in studies:
            summary.skip("report_missing", row["filename"])
            continue
        studies[row["uid"]].images.append((root / image_dir / row["filename"], row["projection"]))
    return list(studies.values())


def _read_xml_layout(
    root: Path, summary: PrepareSummary, image_dir: str, projections: str | Path | None
) -> list[OpenIStudy]:
    projection_of = {}
    if projections is not None:
        for row in read_csv(Path(projections), ("filename", "projection")):
            projection_of[row["filename"].removesuffix(".dcm.png")] = row["projection"]
    studies, referenced = [], set()
    for path in sorted((root / "ecgen-radiology").glob("*.xml")):
        try:
            tree = ET.parse(path).getroot()
        except ET.ParseError as error:
            raise DatasetFormatError(f"OpenI report {str(path)!r} is not valid XML: {error}") from None
        uid_element = tree.find("uId")
        uid = uid_element.get("id", path.stem).removeprefix("CXR") if uid_element is not None else path.stem
        sections = {
            (node.get("Label") or "").upper(): "".join(node.itertext())
            for node in tree.iter("AbstractText")
        }
        mesh = [node.text or "" for node in tree.findall("MeSH/*")]
        study = OpenIStudy(uid, mesh, sections.get("FINDINGS", ""), sections.get("IMPRESSION", ""))
        for image in tree.findall("parentImage"):
            image_id = image.get("id", "")
            referenced.add(image_id)
            projection = projection_of.get(image_id.removeprefix("CXR"), "")
            study.images.append((root / image_dir / f"{image_id}.png", projection))
        studies.append(study)
    image_folder = root / image_dir
    if image_folder.is_dir():
        for png in sorted(image_folder.glob("*.png")):
            if png.stem not in referenced:
                summary.skip("report_file_missing", png.name)
    return studies


class _OpenIBase(DatasetAdapter):
    """The options both OpenI adapters share, and the study loop with its view filter and skip accounting."""

    def __init__(
        self, root: str | Path, image_dir: str | None = None, projections: str | Path | None = None, **kwargs
    ) -> None:
        super().__init__(root, **kwargs)
        self.image_dir = image_dir
        self.projections = projections

    def _images(self, study: OpenIStudy) -> list[tuple[Path, dict]]:
        """The study's images that pass the view filter, each with its subgroup fields (``view``)."""
        if self.views is not None and any(not projection for _, projection in study.images):
            raise DatasetFormatError(
                f"OpenI study CXR{study.uid} has images without a projection; pass projections="
                "'indiana_projections.csv' or views='all'."
            )
        kept = []
        for path, projection in study.images:
            if self.projection_accepted(projection):
                kept.append((path, subgroup_fields(view=projection)))
            else:
                self.summary.skip("view_excluded", path.name)
        return kept

    def _studies(self) -> Iterator[OpenIStudy]:
        for study in read_openi_studies(self.root, self.summary, self.image_dir, self.projections):
            if not study.images:
                self.summary.skip("study_without_images", f"CXR{study.uid}")
                continue
            if NOT_INDEXED in study.problems:
                self.summary.skip("mesh_not_indexed", f"CXR{study.uid}", len(study.images))
                continue
            yield study


class OpenIAdapter(_OpenIBase, ClassificationAdapter):
    """VKD datalist from OpenI; one item per image, labels from MeSH problems (see the module docstring).

    Args:
        root: the OpenI folder (either layout).
        image_dir: image folder relative to ``root`` (defaults per layout).
        projections: an ``indiana_projections.csv`` giving views to the XML layout.
        **kwargs: :class:`ClassificationAdapter` options.

    Example::

        OpenIAdapter("iu_xray", check_images=False).prepare("openi_vkd.json")
    """

    name = "openi"

    def records(self) -> Iterator[Record]:
        for study in self._studies():
            problems = study.problems
            raw = {
                name: float(any(term in problems for term in terms))
                for name, terms in MESH_TO_CHEXPERT.items()
                if name in self.class_names
            }
            label, mask = self.harmoniser(raw)
            report = report_from_sections(study.findings, study.impression)
            images = self._images(study)
            if not self.report_kept(report, f"CXR{study.uid}", len(images)):
                continue
            for path, subgroups in images:
                item = {"image": str(path), "report": report, "label": label, "label_mask": mask}
                yield Record({**item, "patient_id": f"CXR{study.uid}", **subgroups})


class OpenIFractureAdapter(_OpenIBase):
    """AALS datalist from OpenI: record-level rib/clavicle fracture labels from MeSH, so D_P or D_N only.

    Args: as :class:`OpenIAdapter`, without the label and report options.

    Example::

        OpenIFractureAdapter("iu_xray", check_images=False).prepare("openi_fracture.json")
    """

    name = "openi_fracture"
    task = "fracture"

    def records(self) -> Iterator[Record]:
        for study in self._studies():
            sites = [
                [part.strip().lower() for part in entry.split("/")[1:]]
                for entry in study.mesh
                if entry.split("/")[0].strip().lower() == FRACTURE_TERM
            ]
            image_label = [float(any("ribs" in s for s in sites)), float(any("clavicle" in s for s in sites))]
            if any(not s for s in sites) and not any(image_label):
                self.summary.skip("fracture_site_unspecified", f"CXR{study.uid}", len(study.images))
                continue
            subset = fracture_subset(image_label, has_regions=False)
            for path, subgroups in self._images(study):
                item = {"image": str(path), "image_label": image_label, "subset": subset, "boxes": [], "points": []}
                yield Record({**item, "patient_id": f"CXR{study.uid}", **subgroups})
