"""A DICOM Comprehensive SR following TID 1500 (Measurement Report) for the findings of one chest radiograph.

The report is built with highdicom from the :class:`~cxrkd_monai.deploy.findings.FindingCall` list of a prediction
record, so that a viewer that reads TID 1500 (OHIF, 3D Slicer, a PACS SR renderer) shows coded findings and can
place the fracture points on the image::

    Imaging Measurement Report (TID 1500), observer: the algorithm as a device; procedure: XR
    └─ Imaging Measurements
       ├─ Measurement Group (TID 1501), one per class
       │    Finding = <SNOMED CT / DCM code of the class>, Algorithm Name/Version (TID 4019), Source = the image
       │    Probability (DCM 122157) = 0.8123 {probability}
       │    <finding code> = Present | Absent   (the call at the operating point; left out where there is none)
       └─ Measurement Group (TID 1410), one per called point
            Finding = <fracture code>, Algorithm Name/Version, Image Region = SCOORD POINT (column, row) on the image
            Probability = <the point's score>;  <fracture code> = Present

Only the points that :func:`~cxrkd_monai.deploy.findings.fracture_calls` calls (at or above the point-level
operating point) are reported. Importing this module needs highdicom (extra ``deploy``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from cxrkd_monai.deploy.findings import FindingCall

__all__ = ["FINDING_CODES", "PROBABILITY", "PROBABILITY_UNIT", "CodedFinding", "measurement_report"]


class CodedFinding(NamedTuple):
    """The coded concept of a class: a finding, and where the concept alone does not say it, its anatomic site."""

    finding: Code
    site: Code | None = None


_LUNG, _MEDIASTINUM, _PLEURA = codes.SCT.Lung, codes.SCT.Mediastinum, codes.SCT.Pleura

FINDING_CODES: Mapping[str, CodedFinding] = {
    # the 14 CheXpert classes of cxr_vkd_classification
    "No Finding": CodedFinding(codes.DCM.NoAbnormality),
    "Enlarged Cardiomediastinum": CodedFinding(codes.SCT.Enlarged, _MEDIASTINUM),
    "Cardiomegaly": CodedFinding(Code("8186001", "SCT", "Cardiomegaly")),
    "Lung Opacity": CodedFinding(codes.DCM.Opacity, _LUNG),
    "Lung Lesion": CodedFinding(codes.SCT.FindingOfLesion, _LUNG),
    "Edema": CodedFinding(codes.SCT.PulmonaryEdema),
    "Consolidation": CodedFinding(Code("95436008", "SCT", "Lung consolidation")),
    "Pneumonia": CodedFinding(Code("233604007", "SCT", "Pneumonia")),
    "Atelectasis": CodedFinding(Code("46621007", "SCT", "Atelectasis")),
    "Pneumothorax": CodedFinding(codes.SCT.Pneumothorax),
    "Pleural Effusion": CodedFinding(codes.SCT.PleuralEffusion),
    "Pleural Other": CodedFinding(codes.SCT.Abnormal, _PLEURA),
    "Fracture": CodedFinding(Code("125605004", "SCT", "Fracture of bone")),
    "Support Devices": CodedFinding(Code("63653004", "SCT", "Medical device")),
    # the fracture types of cxr_aals_fracture_detection
    "rib_fracture": CodedFinding(Code("33737001", "SCT", "Fracture of rib")),
    "clavicle_fracture": CodedFinding(Code("58150001", "SCT", "Fracture of clavicle")),
}
"""The code of each class name of both bundles. The codes read from pydicom's copy of the DICOM code tables (PS3.16)
are taken from there (``codes.SCT.*``, ``codes.DCM.*``); the others are SNOMED CT concept ids written out, and
classes without a precise pre-coordinated concept are a general finding with a finding site (Enlarged
Cardiomediastinum: Enlarged at the mediastinum)."""

PROBABILITY = codes.DCM.Probability
"""Concept name of every probability: of a class on the image, and of a fracture point (its map value)."""

PROBABILITY_UNIT = Code("{probability}", "UCUM", "probability")
"""UCUM unit of a probability (dimensionless, annotated)."""

# TID 1500 "Procedure Reported": CID 100 has no chest radiograph entry; this is its radiography entry
_PROCEDURE = Code("43468-8", "LN", "XR unspecified body region")


def measurement_report(
    source: Dataset,
    calls: Sequence[FindingCall],
    algorithm_name: str,
    algorithm_version: str,
    series_number: int = 1,
    series_description: str | None = None,
    manufacturer: str | None = None,
) -> hd.sr.ComprehensiveSR:
    """A Comprehensive SR (TID 1500) of one image's findings; patient and study are copied from ``source``.

    Args:
        source: the radiograph the findings are of (its SOP class and instance UIDs, Rows and Columns are used;
            the pixel data is not needed).
        calls: one :class:`~cxrkd_monai.deploy.findings.FindingCall` per class; points in original-image pixels
            (x = column, y = row, pixel ``i`` spans ``[i, i + 1)``), which is DICOM's SCOORD convention.
        algorithm_name, algorithm_version: the bundle's name and version (TID 4019 Algorithm Identification, and
            the device observer).
        series_number: SeriesNumber of the SR.
        series_description: SeriesDescription of the SR (e.g. that it is not for clinical use).
        manufacturer: Manufacturer of the SR.

    Raises:
        KeyError: a class name that :data:`FINDING_CODES` does not code, naming it.
        ValueError: a point outside the image's ``Columns x Rows``, naming it and the image size.
    """
    unknown = [call.name for call in calls if call.name not in FINDING_CODES]
    if unknown:
        raise KeyError(f"No finding code for the class(es) {unknown}; FINDING_CODES codes {list(FINDING_CODES)}.")
    algorithm = hd.sr.AlgorithmIdentification(name=algorithm_name, version=algorithm_version)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=[algorithm_name, algorithm_version]),
            name=algorithm_name,
            model_name=algorithm_version,
        ),
    )
    groups: list[hd.sr.MeasurementsAndQualitativeEvaluations | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations]
    groups = [_image_group(source, call, algorithm) for call in calls]
    groups += [
        _point_group(source, call, index, point, algorithm)
        for call in calls
        for index, point in enumerate(call.points, start=1)
    ]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=_PROCEDURE,
        imaging_measurements=groups,
    )
    extra = {} if series_description is None else {"series_description": series_description}
    return hd.sr.ComprehensiveSR(
        evidence=[source],
        content=report,
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=manufacturer,
        is_complete=True,
        **extra,
    )


def _evaluations(call: FindingCall) -> list[hd.sr.QualitativeEvaluation]:
    """The call at the operating point: ``<finding> = Present | Absent``; none where there is no operating point."""
    if call.present is None:
        return []
    value = codes.SCT.Present if call.present else codes.SCT.Absent
    return [hd.sr.QualitativeEvaluation(FINDING_CODES[call.name].finding, value)]


def _sites(call: FindingCall) -> list[hd.sr.FindingSite] | None:
    site = FINDING_CODES[call.name].site
    return None if site is None else [hd.sr.FindingSite(anatomic_location=site)]


def _image_group(
    source: Dataset, call: FindingCall, algorithm: hd.sr.AlgorithmIdentification
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501 group of a class on the whole image: its probability and its call."""
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=call.name),
        finding_type=FINDING_CODES[call.name].finding,
        finding_sites=_sites(call),
        algorithm_id=algorithm,
        measurements=[hd.sr.Measurement(name=PROBABILITY, value=float(call.probability), unit=PROBABILITY_UNIT)],
        qualitative_evaluations=_evaluations(call),
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )


def _point_group(
    source: Dataset,
    call: FindingCall,
    index: int,
    point: tuple[float, float, float],
    algorithm: hd.sr.AlgorithmIdentification,
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """TID 1410 group of one called point: an SCOORD POINT on the source image, with its score."""
    x, y, score = point
    columns, rows = int(source.Columns), int(source.Rows)
    if not (0.0 <= x <= columns and 0.0 <= y <= rows):
        raise ValueError(
            f"{call.name} point {index} at x {x}, y {y} lies outside the image of Columns x Rows = {columns} x {rows}."
        )
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POINT,
        graphic_data=np.array([[x, y]], dtype=np.float64),
        source_image=hd.sr.SourceImageForRegion.from_source_image(source),
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"{call.name} point {index}"),
        referenced_region=region,
        finding_type=FINDING_CODES[call.name].finding,
        algorithm_id=algorithm,
        measurements=[hd.sr.Measurement(name=PROBABILITY, value=float(score), unit=PROBABILITY_UNIT)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(FINDING_CODES[call.name].finding, codes.SCT.Present)],
    )
