"""The TID 1500 Comprehensive SR of the Deploy apps, from hand-made prediction records, read back by highdicom."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

pytest.importorskip("highdicom", reason="highdicom (extra 'deploy') is not installed")

import highdicom as hd
from monai.bundle import ConfigParser

from cxrkd_monai.deploy.findings import fracture_calls, vkd_calls
from cxrkd_monai.deploy.structured_report import FINDING_CODES, PROBABILITY, PROBABILITY_UNIT, measurement_report
from cxrkd_monai.prepare.labels import CHEXPERT_CLASSES

REPO = Path(__file__).resolve().parents[2]
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
ROWS, COLUMNS = 300, 200

# calibrated: rib called at its image-level point, clavicle without one; the lesion-level point calls the points
# scoring 0.0731 or more, so the second rib peak (0.0402) and the clavicle peak are not called
FRACTURE_RECORD = {
    "image": "/data/instance.dcm",
    "rib_fracture_probability": 0.0931,
    "clavicle_fracture_probability": 0.021,
    "calibrated_rib_fracture": 0.612,
    "threshold_rib_fracture": 0.531,
    "positive_rib_fracture": 1.0,
    "calibrated_clavicle_fracture": 0.021,
    "threshold_clavicle_fracture": 0.3,
    "positive_clavicle_fracture": 0.0,
    "operating_point": "youden",
    "lesion_operating_point": 1.0,
    "lesion_threshold_rib_fracture": 0.0731,
    "lesion_threshold_clavicle_fracture": 0.05,
    "detections": [
        {"class": "rib_fracture", "x": 150.5, "y": 230.0, "score": 0.0931, "called": True},
        {"class": "rib_fracture", "x": 199.75, "y": 12.25, "score": 0.0812, "called": True},
        {"class": "rib_fracture", "x": 100.0, "y": 80.25, "score": 0.0402, "called": False},
        {"class": "clavicle_fracture", "x": 20.0, "y": 40.0, "score": 0.021, "called": False},
    ],
}


@pytest.fixture
def radiograph() -> Dataset:
    """A non-square CR image's header (``Rows`` 300, ``Columns`` 200): what the report copies and references."""
    dataset = Dataset()
    dataset.file_meta = Dataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID, dataset.SOPInstanceUID = CR_IMAGE, generate_uid()
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    dataset.PatientID, dataset.PatientName, dataset.PatientBirthDate, dataset.PatientSex = "P1", "Doe^Jane", "", "F"
    dataset.StudyID, dataset.StudyDate, dataset.StudyTime = "S1", "20240101", "120000"
    dataset.AccessionNumber, dataset.ReferringPhysicianName = "A1", ""
    dataset.Modality, dataset.Rows, dataset.Columns = "CR", ROWS, COLUMNS
    return dataset


def written_and_read_back(report, tmp_path: Path):
    path = tmp_path / "sr.dcm"
    report.save_as(path, enforce_file_format=True)
    return hd.sr.srread(path)


def content_text(report, concept_meaning: str) -> list[str]:
    """The values of every TEXT item named ``concept_meaning`` anywhere in the report's content tree."""
    values = []

    def walk(items):
        for item in items:
            if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeMeaning == concept_meaning:
                values.append(item.TextValue)
            walk(item.get("ContentSequence", []))

    walk(report.ContentSequence)
    return values


def test_fracture_report_codes_calls_and_only_the_called_points_on_the_source_image(radiograph, tmp_path):
    report = measurement_report(
        radiograph,
        fracture_calls(FRACTURE_RECORD),
        "cxr_aals_fracture_detection",
        "0.3.0",
        series_description="AI findings, not for clinical use",
    )
    sr = written_and_read_back(report, tmp_path)
    assert isinstance(sr, hd.sr.ComprehensiveSR) and sr.SOPClassUID == COMPREHENSIVE_SR
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert (sr.PatientID, sr.StudyInstanceUID) == (radiograph.PatientID, radiograph.StudyInstanceUID)
    assert sr.SeriesInstanceUID != radiograph.SeriesInstanceUID
    assert sr.SeriesDescription == "AI findings, not for clinical use"
    # TID 4019 in every group: 2 image-level groups and 2 points
    assert content_text(sr, "Algorithm Name") == ["cxr_aals_fracture_detection"] * 4
    assert content_text(sr, "Algorithm Version") == ["0.3.0"] * 4

    image_groups = sr.content.get_image_measurement_groups()
    assert [group.finding_type for group in image_groups] == [
        hd.sr.CodedConcept("33737001", "SCT", "Fracture of rib"),
        hd.sr.CodedConcept("58150001", "SCT", "Fracture of clavicle"),
    ]
    calls = {"rib_fracture": codes.SCT.Present, "clavicle_fracture": codes.SCT.Absent}
    for group, (name, call) in zip(image_groups, calls.items()):
        (measurement,) = group.get_measurements()
        assert (measurement.name, measurement.unit) == (PROBABILITY, PROBABILITY_UNIT)
        assert measurement.value == pytest.approx(FRACTURE_RECORD[f"{name}_probability"], abs=1e-12)
        (evaluation,) = group.get_qualitative_evaluations()
        assert (evaluation.name, evaluation.value) == (group.finding_type, call)
        (source,) = group.source_images
        assert source.referenced_sop_instance_uid == radiograph.SOPInstanceUID

    point_groups = sr.content.get_planar_roi_measurement_groups()
    called = [d for d in FRACTURE_RECORD["detections"] if d["called"]]
    assert len(point_groups) == len(called) == 2
    for group, detection in zip(point_groups, called):
        assert group.finding_type == FINDING_CODES["rib_fracture"].finding
        assert group.roi.graphic_type == hd.sr.GraphicTypeValues.POINT
        # SCOORD (column, row) equals the detection's (x, y): both put pixel i on [i, i + 1)
        # (GraphicData is FL, float32: these quarter pixels are exact)
        assert list(group.roi.value[0]) == [detection["x"], detection["y"]]
        column, row = group.roi.value[0]
        assert 0 <= column <= radiograph.Columns and 0 <= row <= radiograph.Rows
        (source,) = group.roi.ContentSequence
        assert source.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == radiograph.SOPInstanceUID
        (score,) = group.get_measurements()
        assert score.value == pytest.approx(detection["score"], abs=1e-12)
        # no point below the type's lesion-level threshold
        assert score.value >= FRACTURE_RECORD["lesion_threshold_rib_fracture"]
        (evaluation,) = group.get_qualitative_evaluations()
        assert evaluation.value == codes.SCT.Present


def test_uncalibrated_fracture_report_keeps_no_map_peak_below_the_decision_threshold(radiograph, tmp_path):
    record = {key: value for key, value in FRACTURE_RECORD.items() if not key.startswith(("positive_", "threshold_"))}
    record["operating_point"] = "default"
    calls = fracture_calls(record, decision_threshold=0.08)
    sr = written_and_read_back(measurement_report(radiograph, calls, "bundle", "1.0.0"), tmp_path)
    scores = [group.get_measurements()[0].value for group in sr.content.get_planar_roi_measurement_groups()]
    assert scores == pytest.approx([0.0931, 0.0812], abs=1e-12)
    calls = fracture_calls(record, decision_threshold=0.5)
    sr = written_and_read_back(measurement_report(radiograph, calls, "bundle", "1.0.0"), tmp_path)
    assert sr.content.get_planar_roi_measurement_groups() == []


def test_vkd_report_codes_every_chexpert_class_and_leaves_out_calls_without_an_operating_point(radiograph, tmp_path):
    probabilities = {name: (index + 1) / 20 for index, name in enumerate(CHEXPERT_CLASSES)}
    record = {"image": "x.dcm", "operating_point": "youden"}
    for index, (name, probability) in enumerate(probabilities.items()):
        record |= {f"prob_{name}": probability, f"std_{name}": 0.01}
        record[f"positive_{name}"] = None if index == 0 else float(probability >= 0.4)
    sr = written_and_read_back(measurement_report(radiograph, vkd_calls(record), "cxr_vkd", "0.3.0"), tmp_path)
    groups = sr.content.get_image_measurement_groups()
    assert len(groups) == 14 and sr.content.get_planar_roi_measurement_groups() == []
    for group, (name, probability) in zip(groups, probabilities.items()):
        coded = FINDING_CODES[name]
        assert group.finding_type == coded.finding, name
        assert [site.value for site in group.finding_sites] == ([] if coded.site is None else [coded.site]), name
        assert group.get_measurements()[0].value == pytest.approx(probability, abs=1e-12)
        evaluations = [evaluation.value for evaluation in group.get_qualitative_evaluations()]
        expected = [] if name == "No Finding" else [codes.SCT.Present if probability >= 0.4 else codes.SCT.Absent]
        assert evaluations == expected, name


def test_every_class_of_both_bundles_has_a_distinct_code():
    fracture_classes = ConfigParser.load_config_file(
        REPO / "bundles" / "cxr_aals_fracture_detection" / "configs" / "inference.json"
    )["class_names"]
    vkd_classes = ConfigParser.load_config_file(
        REPO / "bundles" / "cxr_vkd_classification" / "configs" / "inference.json"
    )["class_names"]
    assert set(FINDING_CODES) == {*CHEXPERT_CLASSES, *vkd_classes, *fracture_classes}
    assert len(set(FINDING_CODES.values())) == len(FINDING_CODES)
    for coded in FINDING_CODES.values():
        assert coded.finding.scheme_designator in ("SCT", "DCM") and len(coded.finding.value) <= 16


def test_an_uncoded_class_or_a_point_off_the_image_is_named(radiograph):
    with pytest.raises(KeyError, match="'Hernia'"):
        measurement_report(radiograph, vkd_calls({"prob_Hernia": 0.2}), "bundle", "1.0.0")
    off_image = {**FRACTURE_RECORD, "detections": [{**FRACTURE_RECORD["detections"][0], "x": COLUMNS + 0.5}]}
    with pytest.raises(ValueError, match=r"rib_fracture point 1 at x 200.5, y 230.0 .* 200 x 300"):
        measurement_report(radiograph, fracture_calls(off_image), "bundle", "1.0.0")
