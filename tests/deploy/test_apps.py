"""Both MONAI Deploy apps on the real DICOM chest radiographs: SR and JSON against the bundle's own inference."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export
from pydicom.uid import generate_uid

pytest.importorskip("monai.deploy.operators", reason="the MONAI Deploy App SDK (extra 'deploy') is not installed")

import highdicom as hd
from monai.deploy.core import Fragment
from monai.deploy.core.domain import Image

from cxrkd_monai.deploy.demo_apps import DEMO_APPS, run_demo_apps
from cxrkd_monai.deploy.operators import (
    SR_FORMAT_ENV,
    VKDClassificationOperator,
    instance_file,
    resolve_bundle_root,
    single_frame_size,
)
from cxrkd_monai.deploy.structured_report import FINDING_CODES
from cxrkd_monai.transforms.calibration import Calibration, fp_rate_key, temperature_scale
from tests.deploy.conftest import FRACTURE_TINY, VKD_TINY, make_tiny_bundle

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cxr_format_samples"
DICOM_SAMPLES = [
    "pydicom_data_RG1_UNCI_cr_chest.dcm",
    "siim_cr_chest_pa_jpegbaseline.dcm",
    "siim_cr_chest_pa_monochrome1_fake.dcm",
]
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
@pytest.fixture(scope="module")
def samples() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip(f"real DICOM fixtures not found at {SAMPLES} (the shared data folder next to the repository)")
    return SAMPLES


VKD_TEMPERATURE = 2.0
VKD_THRESHOLD = 0.5
VKD_LINE = (
    r"{name}: probability ([0-9.]+)"
    r"(?: \(calibrated ([0-9.]+), (?:threshold ([0-9.]+): )?(positive|negative|no operating point)\))?, "
    r"uncertainty ([0-9.]+)"
)


@pytest.fixture(scope="module")
def vkd_bundle(tmp_path_factory) -> Path:
    """The tiny VKD bundle with a stored calibration: temperature 2 and the Youden threshold 0.5 for every class."""
    root = tmp_path_factory.mktemp("vkd") / "cxr_vkd_classification"
    bundle = make_tiny_bundle(REPO / "bundles" / "cxr_vkd_classification", root, VKD_TINY)
    class_names = ConfigParser.load_config_file(bundle / "configs" / "inference.json")["class_names"]
    point = {"threshold": VKD_THRESHOLD, "sensitivity": 1.0, "specificity": 1.0, "ppv": 1.0}
    calibration = Calibration(
        class_names=class_names,
        temperature=[VKD_TEMPERATURE] * len(class_names),
        operating_points={rule: dict.fromkeys(class_names, point) for rule in ("youden", "sensitivity", "ppv")},
    )
    (bundle / "models" / "calibration.json").write_text(calibration.to_json())
    return bundle


@pytest.fixture(scope="module")
def fracture_bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fracture") / "cxr_aals_fracture_detection"
    return make_tiny_bundle(REPO / "bundles" / "cxr_aals_fracture_detection", root, FRACTURE_TINY)


def run_app(
    app: str, input_dir: Path, output_dir: Path, model: Path, sr_format: str = "tid1500"
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", f"deploy.{app}", "-i", str(input_dir), "-o", str(output_dir), "-m", str(model)]
    env = dict(os.environ, OMP_NUM_THREADS="1", **{SR_FORMAT_ENV: sr_format})
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def bundle_inference(bundle: Path, datalist_name: str, image: Path, work_dir: Path) -> dict:
    """The bundle's own inference.json on one image, through a one-item datalist: its single prediction record."""
    data_dir = work_dir / "data"
    data_dir.mkdir(parents=True)
    (data_dir / datalist_name).write_text(json.dumps({"test": [{"image": str(image)}]}))
    workflow = ConfigWorkflow(
        config_file=str(bundle / "configs" / "inference.json"),
        logging_file=False,
        workflow_type="infer",
        bundle_root=str(bundle),
        dataset_dir=str(data_dir),
        output_dir=str(work_dir / "predictions"),
        num_workers=0,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return json.loads((work_dir / "predictions" / "predictions.json").read_text())[0]


def read_single_sr(output_dir: Path) -> tuple[pydicom.Dataset, str]:
    """The one Basic Text SR file of an app run (``sr_format`` ``text``) and the text of its one content item."""
    files = sorted(output_dir.glob("*.dcm"))
    assert len(files) == 1, files
    sr = pydicom.dcmread(files[0])
    assert sr.Modality == "SR" and sr.SOPClassUID == BASIC_TEXT_SR
    assert len(sr.ContentSequence) == 1
    item = sr.ContentSequence[0]
    assert item.ValueType == "TEXT" and item.RelationshipType == "CONTAINS"
    assert item.ConceptNameCodeSequence[0].CodeMeaning == "Narrative Summary"
    return sr, item.TextValue


@pytest.mark.parametrize("sample", DICOM_SAMPLES)
def test_vkd_app_sr_matches_bundle_inference(samples, vkd_bundle, tmp_path, sample):
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    dicom_file = Path(shutil.copy(samples / sample, input_dir))
    result = run_app("cxr_vkd_app", input_dir, tmp_path / "output", vkd_bundle, sr_format="text")
    assert result.returncode == 0, result.stderr[-3000:]
    reference = bundle_inference(vkd_bundle, "datalist_vkd.json", dicom_file, tmp_path / "reference")

    source = pydicom.dcmread(dicom_file, stop_before_pixels=True)
    sr, text = read_single_sr(tmp_path / "output")
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.PatientID == source.PatientID
    lines = text.splitlines()
    class_names = [key.removeprefix("prob_") for key in reference if key.startswith("prob_")]
    assert len(class_names) == 14 and len(lines) == 2 + len(class_names)
    # the stored temperature and operating point, applied by the bundle and stated in the SR
    probabilities = torch.tensor([reference[f"prob_{name}"] for name in class_names], dtype=torch.float64)
    calibrated = temperature_scale(probabilities, torch.full((14,), VKD_TEMPERATURE, dtype=torch.float64)).tolist()
    expected_findings = [name for name, value in zip(class_names, calibrated) if value >= VKD_THRESHOLD]
    assert lines[0] == "Operating point: youden (per-class thresholds on the temperature-scaled probability)"
    assert lines[1] == f"Findings: {', '.join(expected_findings) or 'none'}"
    for name, value, line in zip(class_names, calibrated, lines[2:]):
        match = re.fullmatch(VKD_LINE.format(name=re.escape(name)), line)
        assert match and match[2] is not None, line
        assert float(match[1]) == pytest.approx(reference[f"prob_{name}"], abs=5.1e-5)
        assert float(match[2]) == pytest.approx(value, abs=5.1e-5)
        assert float(match[3]) == VKD_THRESHOLD
        assert match[4] == ("positive" if name in expected_findings else "negative")
        assert float(match[5]) == pytest.approx(reference[f"std_{name}"], abs=5.1e-5)
    assert any(reference[f"std_{name}"] > 0 for name in class_names)

    saved = json.loads((tmp_path / "output" / "result.json").read_text())
    assert saved["prediction"].keys() == reference.keys()
    for key, value in reference.items():
        assert saved["prediction"][key] == (value if key == "image" else pytest.approx(value, abs=1e-6)), key
    assert saved["image_size"] == [int(source.Columns), int(source.Rows)]
    assert saved["sop_instance_uid"] == source.SOPInstanceUID
    assert saved["findings"] == text


@pytest.mark.parametrize("sample", DICOM_SAMPLES)
def test_fracture_app_sr_matches_bundle_inference(samples, fracture_bundle, tmp_path, sample):
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    dicom_file = Path(shutil.copy(samples / sample, input_dir))
    result = run_app("cxr_fracture_app", input_dir, tmp_path / "output", fracture_bundle, sr_format="text")
    assert result.returncode == 0, result.stderr[-3000:]
    reference = bundle_inference(fracture_bundle, "datalist_fracture.json", dicom_file, tmp_path / "reference")

    source = pydicom.dcmread(dicom_file, stop_before_pixels=True)
    width, height = int(source.Columns), int(source.Rows)
    sr, text = read_single_sr(tmp_path / "output")
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.PatientID == source.PatientID
    lines = text.splitlines()
    class_names = ["rib_fracture", "clavicle_fracture"]
    expected_findings = [name for name in class_names if reference[f"{name}_probability"] >= 0.5]
    # the tiny bundle has no calibration: the default operating point, on the types and on the points alike
    assert lines[0] == "Operating point: probability >= 0.50 (no calibration in the bundle)"
    assert lines[1] == f"Findings: {', '.join(expected_findings) or 'none'}"
    for name, line in zip(class_names, lines[2:4]):
        match = re.fullmatch(rf"{name}: probability ([0-9.]+)", line)
        assert match, line
        assert float(match[1]) == pytest.approx(reference[f"{name}_probability"], abs=5.1e-5)
    # the initialised detector's map peaks all score below 0.5: a report that calls nothing lists no point
    assert len(lines) == 4 and len(reference["detections"]) > 0
    assert max(detection["score"] for detection in reference["detections"]) < 0.5
    for detection in reference["detections"]:
        # continuous original-image coordinates, [0, W] x [0, H], not the 64 x 64 network grid
        assert 0 <= detection["x"] <= width and 0 <= detection["y"] <= height
    assert max(d["x"] for d in reference["detections"]) > 64 or max(d["y"] for d in reference["detections"]) > 64

    saved = json.loads((tmp_path / "output" / "result.json").read_text())
    # the app turns the bundle's probability-map files off: its bundle output folder is temporary
    assert saved["prediction"] == {key: value for key, value in reference.items() if key != "probability_map"}
    assert saved["findings"] == text


def narrow_copy(source: Path, destination: Path, columns: int = 384) -> Path:
    """``source`` cut to its first ``columns`` columns, uncompressed: an image far taller than wide, on which a
    point with its x and y swapped would fall outside."""
    dataset = pydicom.dcmread(source)
    pixels = np.ascontiguousarray(dataset.pixel_array[:, :columns])
    dataset.decompress()
    dataset.PixelData, dataset.Columns = pixels.tobytes(), columns
    dataset.save_as(destination, enforce_file_format=True)
    return destination


def write_fracture_calibration(bundle: Path, lesion_threshold: float) -> None:
    """A calibration (temperature 1) whose image-level point calls rib fracture present and clavicle fracture
    absent, and whose lesion-level point at 1 false positive per image calls the points scoring ``lesion_threshold``
    or more."""
    class_names = ["rib_fracture", "clavicle_fracture"]
    image_points = {name: {"threshold": threshold, "sensitivity": 1.0, "specificity": 1.0, "ppv": 1.0}
                    for name, threshold in zip(class_names, (0.0, 1.0))}  # fmt: skip
    lesion_point = {"threshold": lesion_threshold, "sensitivity": 1.0, "fps_per_image": 1.0}
    calibration = Calibration(
        class_names=class_names,
        temperature=[1.0, 1.0],
        operating_points=dict.fromkeys(("youden", "sensitivity", "ppv"), image_points),
        fp_per_image_targets=[1.0],
        lesion_operating_points={fp_rate_key(1.0): dict.fromkeys(class_names, lesion_point)},
    )
    (bundle / "models" / "calibration.json").write_text(calibration.to_json())


def read_measurement_report(output_dir: Path) -> hd.sr.ComprehensiveSR:
    """The one SR file of an app run, read by highdicom: a TID 1500 Comprehensive SR."""
    files = sorted(output_dir.glob("*.dcm"))
    assert len(files) == 1, files
    sr = hd.sr.srread(files[0])
    assert isinstance(sr, hd.sr.ComprehensiveSR) and sr.SOPClassUID == COMPREHENSIVE_SR
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    return sr


def algorithm_of(group) -> tuple[str, str]:
    """Name and version of a measurement group's TID 4019 Algorithm Identification."""
    items = group[0].ContentSequence
    name, version = (hd.sr.CodedConcept(code, "DCM", meaning) for code, meaning in
                     (("111001", "Algorithm Name"), ("111003", "Algorithm Version")))  # fmt: skip
    return items.find(name)[0].value, items.find(version)[0].value


@pytest.mark.parametrize("sample", [DICOM_SAMPLES[0], "narrow"])
def test_fracture_app_tid1500_sr_codes_calls_and_points_above_the_operating_point(
    samples, fracture_bundle, tmp_path, sample
):
    """The coded SR: both types with their probability and call, and exactly the detections at or above the
    lesion-level threshold as SCOORD points on the input instance, inside its Columns x Rows."""
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    if sample == "narrow":
        dicom_file = narrow_copy(samples / DICOM_SAMPLES[1], input_dir / "narrow.dcm")
    else:
        dicom_file = Path(shutil.copy(samples / sample, input_dir))
    reference = bundle_inference(fracture_bundle, "datalist_fracture.json", dicom_file, tmp_path / "reference")
    scores = sorted(detection["score"] for detection in reference["detections"])
    assert len(set(scores)) > 1, "the test needs detections on both sides of the lesion threshold"
    lesion_threshold = scores[len(scores) // 2]
    bundle = Path(shutil.copytree(fracture_bundle, tmp_path / "cxr_aals_fracture_detection"))
    write_fracture_calibration(bundle, lesion_threshold)
    result = run_app("cxr_fracture_app", input_dir, tmp_path / "output", bundle)
    assert result.returncode == 0, result.stderr[-3000:]

    source = pydicom.dcmread(dicom_file, stop_before_pixels=True)
    sr = read_measurement_report(tmp_path / "output")
    assert (sr.PatientID, sr.StudyInstanceUID) == (source.PatientID, source.StudyInstanceUID)
    metadata = ConfigParser.load_config_file(bundle / "configs" / "metadata.json")
    image_groups = sr.content.get_image_measurement_groups()
    calls = {"rib_fracture": hd.sr.CodedConcept("52101004", "SCT", "Present"),
             "clavicle_fracture": hd.sr.CodedConcept("272519000", "SCT", "Absent")}  # fmt: skip
    assert [group.finding_type for group in image_groups] == [FINDING_CODES[name].finding for name in calls]
    for group, (name, call) in zip(image_groups, calls.items()):
        assert group.get_measurements()[0].value == pytest.approx(reference[f"{name}_probability"], abs=1e-6)
        assert group.get_qualitative_evaluations()[0].value == call
        assert group.source_images[0].referenced_sop_instance_uid == source.SOPInstanceUID
        assert algorithm_of(group) == (metadata["name"], metadata["version"])

    expected = [detection for detection in reference["detections"] if detection["score"] >= lesion_threshold]
    point_groups = sr.content.get_planar_roi_measurement_groups()
    assert 0 < len(point_groups) == len(expected) < len(reference["detections"])
    for group, detection in zip(point_groups, expected):
        assert group.finding_type == FINDING_CODES[detection["class"]].finding
        assert group.roi.graphic_type == hd.sr.GraphicTypeValues.POINT
        referenced = group.roi.ContentSequence[0].ReferencedSOPSequence[0]
        assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
        column, row = group.roi.value[0]
        assert 0 <= column <= source.Columns and 0 <= row <= source.Rows
        # GraphicData is FL (float32): 2**-24 relative
        assert (column, row) == pytest.approx((detection["x"], detection["y"]), rel=1e-7)
        score = group.get_measurements()[0].value
        assert score == pytest.approx(detection["score"], abs=1e-6) and score >= lesion_threshold

    saved = json.loads((tmp_path / "output" / "result.json").read_text())
    assert [call["name"] for call in saved["calls"]] == list(calls)
    assert saved["sop_instance_uid"] == source.SOPInstanceUID


def test_vkd_app_tid1500_sr_codes_every_class_with_its_probability_and_call(samples, vkd_bundle, tmp_path):
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    dicom_file = Path(shutil.copy(samples / DICOM_SAMPLES[1], input_dir))
    result = run_app("cxr_vkd_app", input_dir, tmp_path / "output", vkd_bundle)
    assert result.returncode == 0, result.stderr[-3000:]
    reference = bundle_inference(vkd_bundle, "datalist_vkd.json", dicom_file, tmp_path / "reference")

    source = pydicom.dcmread(dicom_file, stop_before_pixels=True)
    sr = read_measurement_report(tmp_path / "output")
    assert (sr.PatientID, sr.StudyInstanceUID) == (source.PatientID, source.StudyInstanceUID)
    class_names = [key.removeprefix("prob_") for key in reference if key.startswith("prob_")]
    groups = sr.content.get_image_measurement_groups()
    assert [group.finding_type for group in groups] == [FINDING_CODES[name].finding for name in class_names]
    assert sr.content.get_planar_roi_measurement_groups() == []
    present, absent = hd.sr.CodedConcept("52101004", "SCT", "Present"), hd.sr.CodedConcept("272519000", "SCT", "Absent")
    for group, name in zip(groups, class_names):
        assert group.get_measurements()[0].value == pytest.approx(reference[f"prob_{name}"], abs=1e-6)
        assert group.get_qualitative_evaluations()[0].value == (present if reference[f"positive_{name}"] else absent)
        assert group.source_images[0].referenced_sop_instance_uid == source.SOPInstanceUID


def test_series_that_is_not_an_xray_fails_with_no_matching_series(samples, vkd_bundle, tmp_path):
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    dataset = pydicom.dcmread(samples / DICOM_SAMPLES[1])
    dataset.Modality = "CT"
    dataset.save_as(input_dir / "ct.dcm")
    result = run_app("cxr_vkd_app", input_dir, tmp_path / "output", vkd_bundle)
    assert result.returncode != 0
    assert "No matching series" in result.stderr
    assert "(SeriesNumber 1, 'view: PA'): Modality 'CT', not CR or DX" in result.stderr
    assert not list((tmp_path / "output").iterdir())


def test_pa_series_is_read_from_a_study_with_a_lateral_and_no_body_part(samples, vkd_bundle, tmp_path):
    """One study as PACS store it: a lateral (series 1, original) and a PA (series 2, derived), neither with
    BodyPartExamined; the app reads the PA."""
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    series_uids = {}
    for number, view, image_type in [(1, "LL", ["ORIGINAL", "PRIMARY"]), (2, "PA", ["DERIVED", "PRIMARY"])]:
        dataset = pydicom.dcmread(samples / DICOM_SAMPLES[1])
        del dataset.BodyPartExamined
        dataset.SeriesNumber, dataset.ViewPosition, dataset.ImageType = number, view, image_type
        dataset.SeriesInstanceUID, dataset.SOPInstanceUID = generate_uid(), generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.save_as(input_dir / f"{view}.dcm")
        series_uids[view] = dataset.SeriesInstanceUID
    result = run_app("cxr_vkd_app", input_dir, tmp_path / "output", vkd_bundle)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "output" / "result.json").read_text())["series_instance_uid"] == series_uids["PA"]
    lateral = "(SeriesNumber 1, 'view: PA'): not selectable: lateral view (ViewPosition 'LL'), not frontal"
    assert lateral in result.stderr
    assert "(SeriesNumber 2, 'view: PA'): selected, ranked 1 of 1 selectable" in result.stderr
    assert not any(uid in result.stderr for uid in series_uids.values())


def test_empty_input_folder_fails_clearly(vkd_bundle, tmp_path):
    (tmp_path / "input").mkdir()
    result = run_app("cxr_vkd_app", tmp_path / "input", tmp_path / "output", vkd_bundle)
    assert result.returncode != 0
    assert f"No study loaded from path {tmp_path / 'input'}" in result.stderr
    assert not list((tmp_path / "output").iterdir())


def test_bundle_root_is_found_directly_or_as_the_one_model_subfolder(vkd_bundle, tmp_path):
    assert resolve_bundle_root(vkd_bundle) == vkd_bundle
    assert resolve_bundle_root(vkd_bundle.parent) == vkd_bundle
    (tmp_path / "configs").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(repr(str(tmp_path)))):
        resolve_bundle_root(tmp_path)


def test_single_frame_volume_is_squeezed_and_multi_frame_refused():
    assert single_frame_size(Image(np.zeros((1, 3, 5), dtype=np.uint16))) == (5, 3)
    with pytest.raises(ValueError, match="W x H x D = 5 x 3 x 2"):
        single_frame_size(Image(np.zeros((2, 3, 5), dtype=np.uint16)))
    with pytest.raises(ValueError, match=r"shape \(3, 5\)"):
        single_frame_size(Image(np.zeros((3, 5))))


def test_instance_without_source_file_is_written_for_the_loader(samples, tmp_path):
    on_disk = samples / DICOM_SAMPLES[1]
    assert instance_file(pydicom.dcmread(on_disk), tmp_path) == on_disk
    in_memory = pydicom.dcmread(io.BytesIO(on_disk.read_bytes()))
    written = instance_file(in_memory, tmp_path)
    assert written.parent == tmp_path
    assert in_memory.SOPInstanceUID not in str(written), "inference messages name the file: no UID in its name"
    copy = pydicom.dcmread(written)
    assert copy.SOPInstanceUID == in_memory.SOPInstanceUID
    np.testing.assert_array_equal(copy.pixel_array, in_memory.pixel_array)



def test_torchscript_only_bundle_gives_the_checkpoint_predictions(samples, vkd_bundle, tmp_path):
    """``models/model.ts`` from ``ckpt_export`` replaces the network, the calibration beside it still applies;
    deterministic (L = 0) outputs agree."""
    torchscript_bundle = tmp_path / "cxr_vkd_classification"
    shutil.copytree(vkd_bundle / "configs", torchscript_bundle / "configs")
    (torchscript_bundle / "models").mkdir()
    shutil.copy2(vkd_bundle / "models" / "calibration.json", torchscript_bundle / "models" / "calibration.json")
    ckpt_export(
        net_id="network_def",
        filepath=str(torchscript_bundle / "models" / "model.ts"),
        ckpt_file=str(vkd_bundle / "models" / "model.pt"),
        meta_file=str(vkd_bundle / "configs" / "metadata.json"),
        config_file=str(vkd_bundle / "configs" / "inference.json"),
    )
    image = samples / DICOM_SAMPLES[1]
    records = [
        VKDClassificationOperator(
            Fragment(), bundle_path=bundle, output_folder=tmp_path, config_overrides={"inference_mc_samples": 0}
        ).infer(image)
        for bundle in (vkd_bundle, torchscript_bundle)
    ]
    assert records[0].keys() == records[1].keys() and records[1]["operating_point"] == "youden"
    for key in records[0]:
        if key != "image":
            assert records[1][key] == pytest.approx(records[0][key], abs=1e-5), key


def test_bundle_without_weights_is_named(vkd_bundle, tmp_path):
    shutil.copytree(vkd_bundle / "configs", tmp_path / "bundle" / "configs")
    with pytest.raises(FileNotFoundError, match="has neither .*model.pt nor .*model.ts"):
        VKDClassificationOperator(Fragment(), bundle_path=tmp_path / "bundle", output_folder=tmp_path)


def test_both_apps_on_the_demo_dicom_studies_carry_the_bundle_predictions_and_the_input_uids(tiny_demo, tmp_path):
    """``make deploy-demo`` on a tiny demo: every coded SR names the input's patient and study and holds the
    probabilities and points of its result.json, whose findings text holds the numbers of the exported bundle's
    predictions.csv on the same DICOM file.

    The detector is deterministic, so its text equals predictions.csv to the text's 4 decimals. VKD's probabilities
    are means over ``inference_mc_samples`` prior draws, which follow the batch: the app infers one image, the
    demo's bundle run a batch of three. Its SR equals the bundle's inference on that one file to 4 decimals, and
    predictions.csv within 5 standard errors of the difference of two such means.
    """
    demo_dir, figures, _ = tiny_demo
    results = run_demo_apps(demo_dir)
    dicom_datalist = demo_dir / "dicom" / "datalist.json"
    studies = [dicom_datalist.parent / relative for relative in json.loads(dicom_datalist.read_text())["test"]]
    assert [(result.input_file, result.app) for result in results] == [
        (study, app) for study in studies for app in DEMO_APPS
    ]
    predictions = {}
    for app, bundle in DEMO_APPS.items():
        table = (Path(figures["bundles"][bundle]) / "predictions" / "predictions.csv").read_text().splitlines()
        predictions[app] = {row["image"]: row for row in csv.DictReader(table)}
    vkd_bundle = Path(figures["bundles"]["cxr_vkd_classification"])
    mc_samples = ConfigParser.load_config_file(vkd_bundle / "configs" / "inference.json")["inference_mc_samples"]
    for index, result in enumerate(results):
        source = pydicom.dcmread(result.input_file, stop_before_pixels=True)
        sr = read_measurement_report(result.sr_file.parent)
        assert (sr.PatientID, sr.PatientName, sr.StudyInstanceUID) == (
            source.PatientID,
            source.PatientName,
            source.StudyInstanceUID,
        )
        saved = json.loads(result.result_file.read_text())
        assert saved["study_instance_uid"] == source.StudyInstanceUID
        assert saved["sop_instance_uid"] == source.SOPInstanceUID
        coded = [group.get_measurements()[0].value for group in sr.content.get_image_measurement_groups()]
        assert coded == pytest.approx([call["probability"] for call in saved["calls"]], abs=1e-6)
        row = predictions[result.app][str(result.input_file)]
        # both apps state their operating point, then the findings
        class_lines = {
            line.split(":")[0]: line for line in result.findings[2:] if " point:" not in line
        }
        if result.app == "cxr_fracture_app":
            # the exported student carries the calibration fitted on validation: calls at its Youden point, points
            # at its lesion-level point
            header, called = result.findings[:2]
            assert header.startswith("Operating point: youden (") and "chosen on validation" in header
            assert called.startswith("Findings: ")
            calls = {name: line for name, line in class_lines.items() if name in ("rib_fracture", "clavicle_fracture")}
            assert list(calls) == ["rib_fracture", "clavicle_fracture"]
            for name, line in calls.items():
                match = re.fullmatch(
                    rf"{name}: (positive|negative) \(probability ([0-9.]+), calibrated [0-9.]+, threshold [0-9.]+.*\)",
                    line,
                )
                assert match, line
                assert float(match[2]) == pytest.approx(float(row[f"{name}_probability"]), abs=5.1e-5)
                assert (match[1] == "positive") == (float(row[f"positive_{name}"]) == 1.0)
                assert (name in called) == (match[1] == "positive")
            lesion_point = "Points: detections called at 1 false positives per image on validation"
            assert any(line.startswith(lesion_point) for line in result.findings)
            points = [line for line in result.findings[1:] if " point:" in line]  # after "Operating point: ..."
            # inference lists the called detections only, and the SR has them as points
            sr_points = sr.content.get_planar_roi_measurement_groups()
            assert len(points) == len(json.loads(row["detections"])) == len(sr_points)
            continue
        reference = bundle_inference(vkd_bundle, "datalist_vkd.json", result.input_file, tmp_path / str(index))
        class_names = [key.removeprefix("prob_") for key in reference if key.startswith("prob_")]
        assert list(class_lines) == class_names
        for name, line in class_lines.items():
            match = re.fullmatch(VKD_LINE.format(name=re.escape(name)), line)
            probability, spread = float(match[1]), float(match[5])
            assert probability == pytest.approx(reference[f"prob_{name}"], abs=5.1e-5)
            assert spread == pytest.approx(reference[f"std_{name}"], abs=5.1e-5)
            standard_error = ((spread**2 + float(row[f"std_{name}"]) ** 2) / mc_samples) ** 0.5
            assert probability == pytest.approx(float(row[f"prob_{name}"]), abs=5 * standard_error + 5.1e-5)
