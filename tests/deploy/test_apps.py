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

pytest.importorskip("monai.deploy.operators", reason="the MONAI Deploy App SDK (extra 'deploy') is not installed")

from monai.deploy.core import Fragment
from monai.deploy.core.domain import Image

from cxrkd_monai.deploy.demo_apps import DEMO_APPS, run_demo_apps
from cxrkd_monai.deploy.operators import (
    VKDClassificationOperator,
    instance_file,
    resolve_bundle_root,
    single_frame_size,
)
from cxrkd_monai.transforms.calibration import Calibration, temperature_scale

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cxr_format_samples"
DICOM_SAMPLES = [
    "pydicom_data_RG1_UNCI_cr_chest.dcm",
    "siim_cr_chest_pa_jpegbaseline.dcm",
    "siim_cr_chest_pa_monochrome1_fake.dcm",
]
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
VKD_TINY = {
    "image_size": [64, 64],
    "latent_dim": 16,
    "inference_mc_samples": 4,
    "network_def#image_encoder": {
        "_target_": "DenseNet",
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 32,
        "init_features": 8,
        "growth_rate": 8,
        "block_config": [2, 2, 2, 2],
    },
    "network_def#image_feature_dim": 32,
}

FRACTURE_TINY = {
    "image_size": [64, 64],
    "layers": [1, 1, 1, 1],
    "block_inplanes": [8, 16, 32, 64],
    "fpn_channels": 8,
    # an initialised detector scores about 0.01 everywhere; a low threshold still yields points to compare
    "peak_threshold": 0.005,
    "max_peaks": 5,
}


@pytest.fixture(scope="module")
def samples() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip(f"real DICOM fixtures not found at {SAMPLES} (the shared data folder next to the repository)")
    return SAMPLES


def make_tiny_bundle(source: Path, destination: Path, overrides: dict) -> Path:
    """A copy of a bundle's configs with ``overrides`` written into inference.json and seeded initial weights."""
    shutil.copytree(source / "configs", destination / "configs")
    parser = ConfigParser()
    parser.read_config(str(destination / "configs" / "inference.json"))
    parser.update(overrides)
    ConfigParser.export_config_file(parser.get(), str(destination / "configs" / "inference.json"), indent=1)
    torch.manual_seed(0)
    (destination / "models").mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), destination / "models" / "model.pt")
    return destination


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


def run_app(app: str, input_dir: Path, output_dir: Path, model: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", f"deploy.{app}", "-i", str(input_dir), "-o", str(output_dir), "-m", str(model)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
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
    """The one SR file of an app run and the text of its one content item."""
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
    result = run_app("cxr_vkd_app", input_dir, tmp_path / "output", vkd_bundle)
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
    result = run_app("cxr_fracture_app", input_dir, tmp_path / "output", fracture_bundle)
    assert result.returncode == 0, result.stderr[-3000:]
    reference = bundle_inference(fracture_bundle, "datalist_fracture.json", dicom_file, tmp_path / "reference")

    source = pydicom.dcmread(dicom_file, stop_before_pixels=True)
    width, height = int(source.Columns), int(source.Rows)
    sr, text = read_single_sr(tmp_path / "output")
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.PatientID == source.PatientID
    lines = text.splitlines()
    class_names = ["rib_fracture", "clavicle_fracture"]
    expected_findings = [name for name in class_names if reference[f"{name}_probability"] >= 0.5]
    # the tiny bundle has no calibration: the default operating point, every detection listed
    assert lines[0] == "Operating point: probability >= 0.50 (no calibration in the bundle)"
    assert lines[1] == f"Findings: {', '.join(expected_findings) or 'none'}"
    for name, line in zip(class_names, lines[2:4]):
        match = re.fullmatch(rf"{name}: probability ([0-9.]+)", line)
        assert match, line
        assert float(match[1]) == pytest.approx(reference[f"{name}_probability"], abs=5.1e-5)
    points = lines[4:]
    assert len(points) == len(reference["detections"]) > 0
    for line, detection in zip(points, reference["detections"]):
        match = re.fullmatch(r"(\w+) point: x ([0-9.]+), y ([0-9.]+), score ([0-9.]+)", line)
        assert match, line
        assert match[1] == detection["class"]
        assert float(match[2]) == pytest.approx(detection["x"], abs=0.051)
        assert float(match[3]) == pytest.approx(detection["y"], abs=0.051)
        assert float(match[4]) == pytest.approx(detection["score"], abs=5.1e-5)
        # continuous original-image coordinates, [0, W] x [0, H], not the 64 x 64 network grid
        assert 0 <= detection["x"] <= width and 0 <= detection["y"] <= height
    assert max(d["x"] for d in reference["detections"]) > 64 or max(d["y"] for d in reference["detections"]) > 64

    saved = json.loads((tmp_path / "output" / "result.json").read_text())
    # the app turns the bundle's probability-map files off: its bundle output folder is temporary
    assert saved["prediction"] == {key: value for key, value in reference.items() if key != "probability_map"}
    assert saved["findings"] == text


def test_series_that_is_not_an_xray_fails_with_no_matching_series(samples, vkd_bundle, tmp_path):
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    dataset = pydicom.dcmread(samples / DICOM_SAMPLES[1])
    dataset.Modality = "CT"
    dataset.save_as(input_dir / "ct.dcm")
    result = run_app("cxr_vkd_app", input_dir, tmp_path / "output", vkd_bundle)
    assert result.returncode != 0
    assert "No matching series" in result.stderr
    assert "Modality='CT' BodyPartExamined='CHEST'" in result.stderr
    assert not list((tmp_path / "output").iterdir())


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
    """``make deploy-demo`` on a tiny demo: every SR names the input's patient and study and holds the numbers of
    the exported bundle's predictions.csv on the same DICOM file.

    The detector is deterministic, so its SR equals predictions.csv to the SR's 4 decimals. VKD's probabilities
    are means over ``inference_mc_samples`` prior draws, which follow the batch: the app infers one image, the
    demo's bundle run a batch of three. Its SR equals the bundle's inference on that one file to 4 decimals, and
    predictions.csv within 5 standard errors of the difference of two such means.
    """
    demo_dir, figures = tiny_demo
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
        sr = pydicom.dcmread(result.sr_file)
        assert sr.Modality == "SR" and sr.SOPClassUID == BASIC_TEXT_SR
        assert (sr.PatientID, sr.PatientName, sr.StudyInstanceUID) == (
            source.PatientID,
            source.PatientName,
            source.StudyInstanceUID,
        )
        saved = json.loads(result.result_file.read_text())
        assert saved["study_instance_uid"] == source.StudyInstanceUID
        assert saved["sop_instance_uid"] == source.SOPInstanceUID
        assert result.findings == saved["findings"].splitlines()
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
            # inference lists the called detections only
            assert len(points) == len(json.loads(row["detections"]))
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
