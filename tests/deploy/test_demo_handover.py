"""The demo's hand-over: its exported bundles reproduce its figures on their own, and ran on its DICOM studies."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pydicom
import pytest
import torch

from cxrkd_monai.bundle import bundle_path
from cxrkd_monai.bundle.trained_bundle import check_exported_bundle
from cxrkd_monai.deploy.findings import fracture_findings
from cxrkd_monai.transforms.calibration import Calibration, temperature_scale
from tests.conftest import config_workflow

pytestmark = pytest.mark.slow

# bundle -> (evaluation configs, the demo's figures for its exported model, the demo's evaluation folder)
EVALUATIONS = {
    "cxr_vkd_classification": (["train.json", "evaluate.json"], ("vkd", "vkd"), "vkd/vkd/eval"),
    "cxr_aals_fracture_detection": (
        ["train_teacher.json", "evaluate.json"],
        ("aals", "student, AALS"),
        "aals/eval_student_aals",
    ),
}


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    """A predictions.csv as rows keyed by image path."""
    with open(path, newline="") as handle:
        return {row["image"]: row for row in csv.DictReader(handle)}


def assert_same_numbers(rows: dict, reference: dict, columns: list[str], tolerance: float) -> None:
    assert rows.keys() == reference.keys()
    for image, row in rows.items():
        for column in columns:
            assert float(row[column]) == pytest.approx(float(reference[image][column]), abs=tolerance), (image, column)


def same_figure(value, reference) -> bool:
    if reference is None or (isinstance(reference, float) and math.isnan(reference)):
        return value is None or math.isnan(value)
    # AUROC and FROC of one image set: the same predictions to float rounding give the same figure
    return value == pytest.approx(reference, abs=1e-6)


@pytest.mark.parametrize("name", sorted(EVALUATIONS))
def test_exported_bundle_reproduces_the_demo_test_figures_from_its_own_evaluate_json(tiny_demo, tmp_path, name):
    demo_dir, figures, _ = tiny_demo
    bundle = Path(figures["bundles"][name])
    configs, (task, variant), demo_eval = EVALUATIONS[name]
    workflow = config_workflow(
        [bundle / "configs" / config for config in configs],
        "eval",
        logging_file=False,
        dataset_dir=str(demo_dir / "data"),
        output_dir=str(tmp_path),
        num_workers=0,
    )
    workflow.run()
    workflow.finalize()

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    demo_figures = figures[task][variant]
    auroc_keys = [key for key in metrics if "auroc" in key]
    assert auroc_keys and any(0.0 < (demo_figures[key] or 0.0) < 1.0 for key in auroc_keys)
    bootstrap, demo_bootstrap = metrics.pop("bootstrap"), demo_figures["bootstrap"]
    for key in metrics:
        assert same_figure(metrics[key], demo_figures[key]), (key, metrics[key], demo_figures[key])
    # the same predictions, resampled with the same seed: the same intervals
    assert bootstrap["intervals"].keys() == demo_bootstrap["intervals"].keys()
    for key, interval in bootstrap["intervals"].items():
        for bound in ("lower", "upper"):
            assert same_figure(interval[bound], demo_bootstrap["intervals"][key][bound]), (key, bound)
    rows = read_rows(tmp_path / "predictions.csv")
    numeric = [column for column in next(iter(rows.values())) if "prob" in column or column.startswith("std_")]
    assert_same_numbers(rows, read_rows(demo_dir / demo_eval / "predictions.csv"), numeric, tolerance=1e-6)


def test_exported_bundles_pass_the_source_bundle_checks_and_label_their_figures_synthetic(tiny_demo):
    demo_dir, figures, _ = tiny_demo
    assert set(figures["bundles"]) == {"cxr_vkd_classification", "cxr_aals_fracture_detection"}
    printed = (demo_dir / "results.txt").read_text()
    class_names = json.loads((demo_dir / "data" / "datalist_vkd.json").read_text())["class_names"]
    for name, path in figures["bundles"].items():
        bundle = Path(path)
        assert bundle == demo_dir / "bundles" / name and path in printed
        check_exported_bundle(bundle)
        assert not (bundle / "large_files.yml").exists()  # it would fetch the published weights over these
        metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
        assert "synthetic" in metadata["data_source"] and "Not for clinical use" in metadata["intended_use"]
        assert metadata["eval_metrics"]
        assert all(key.startswith("synthetic_demo_test_") for key in metadata["eval_metrics"])
    vkd_metadata = json.loads((demo_dir / "bundles/cxr_vkd_classification/configs/metadata.json").read_text())
    assert vkd_metadata["eval_metrics"]["synthetic_demo_test_macro_auroc"] == figures["vkd"]["vkd"]["val_macro_auroc"]
    assert list(vkd_metadata["network_data_format"]["outputs"]["pred"]["channel_def"].values()) == class_names
    assert vkd_metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] == [64, 64]
    # its own version and card: the demo's classes and image size, not the source bundle's defaults
    source = json.loads((bundle_path("cxr_vkd_classification") / "configs" / "metadata.json").read_text())
    assert vkd_metadata["version"] == f"{source['version']}+demo.{len(class_names)}c64px"
    card = (demo_dir / "bundles/cxr_vkd_classification/docs/README.md").read_text()
    assert f"| classes | {len(class_names)}: {', '.join(f'`{name}`' for name in class_names)} |" in card
    assert "| input | 64 x 64 px (`image_size`), one channel |" in card
    aals_metadata = json.loads((demo_dir / "bundles/cxr_aals_fracture_detection/configs/metadata.json").read_text())
    rib = figures["aals"]["student, AALS"]["val_auroc_rib_fracture"]
    assert aals_metadata["eval_metrics"]["synthetic_demo_test_rib_auroc"] == rib


def test_exported_bundles_ran_on_the_demo_dicom_studies(tiny_demo):
    demo_dir, figures, _ = tiny_demo
    datalist = demo_dir / "dicom" / "datalist.json"
    dicom_files = [str(datalist.parent / relative) for relative in json.loads(datalist.read_text())["test"]]
    test_items = json.loads((demo_dir / "data" / "datalist_vkd.json").read_text())["test"]
    assert len(dicom_files) == 3
    studies = set()
    for path, item in zip(dicom_files, test_items):
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        assert (dataset.Modality, dataset.PhotometricInterpretation) == ("CR", "MONOCHROME2")
        assert dataset.PatientID == item["patient_id"] and Path(path).stem == Path(item["image"]).stem
        studies.add(dataset.StudyInstanceUID)
    assert len(studies) == 3

    for path in figures["bundles"].values():
        predictions = Path(path) / "predictions"
        assert sorted(read_rows(predictions / "predictions.csv")) == sorted(dicom_files)
        assert len((predictions / "errors.csv").read_text().splitlines()) <= 1  # a header at most: no failures
    # the detector is deterministic and a study loads to its PNG's intensities: the demo's PNG predictions recur
    png_rows = read_rows(demo_dir / "aals" / "predictions" / "predictions.csv")
    dicom_rows = read_rows(demo_dir / "bundles" / "cxr_aals_fracture_detection" / "predictions" / "predictions.csv")
    png_of = {str(demo_dir / "data" / item["image"]): path for item, path in zip(test_items, dicom_files)}
    reference = {png_of[image]: row for image, row in png_rows.items() if image in png_of}
    columns = ["rib_fracture_probability", "clavicle_fracture_probability"]
    assert_same_numbers(dicom_rows, reference, columns, tolerance=1e-6)
    for image, row in dicom_rows.items():
        found, expected = json.loads(row["detections"]), json.loads(reference[image]["detections"])
        assert [point["class"] for point in found] == [point["class"] for point in expected]
        for point, expected_point in zip(found, expected):
            coordinates = [expected_point[key] for key in ("x", "y", "score")]
            assert [point[key] for key in ("x", "y", "score")] == pytest.approx(coordinates, abs=1e-6)


def test_the_demo_fracture_findings_name_the_operating_point_and_call_at_it(tiny_demo):
    demo_dir, figures, _ = tiny_demo
    bundle = Path(figures["bundles"]["cxr_aals_fracture_detection"])
    calibration = Calibration.load(bundle / "models" / "calibration.json")
    # the exported student's own calibration, fitted on validation when it was the best model
    assert calibration == Calibration.load(demo_dir / "aals" / "models" / "student_aals_calibration.json")
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    types = calibration.class_names
    temperature = torch.tensor(calibration.temperature, dtype=torch.float64)
    thresholds, lesion_thresholds = calibration.thresholds("youden"), calibration.lesion_thresholds(1.0)
    for record in json.loads((bundle / "predictions" / "predictions.json").read_text()):
        lines = fracture_findings(record, metadata["calibration"]).splitlines()
        assert lines[0].startswith("Operating point: youden (") and lines[0].endswith("chosen on validation)")
        assert lines[1] == f"Findings: {', '.join(n for n in types if record[f'positive_{n}'] == 1.0) or 'none'}"
        probabilities = torch.tensor([record[f"{name}_probability"] for name in types], dtype=torch.float64)
        calibrated = temperature_scale(probabilities, temperature).tolist()
        for name, value, threshold in zip(types, calibrated, thresholds):
            if math.isnan(threshold):
                assert record[f"positive_{name}"] is None
            elif abs(value - threshold) > 1e-6:  # the record's probability is float32
                assert record[f"positive_{name}"] == float(value >= threshold)
        by_type = dict(zip(types, lesion_thresholds))
        assert all(d["score"] >= by_type[d["class"]] for d in record["detections"])
        points = [line for line in lines if re.fullmatch(r"\w+ point: x [0-9.]+, y [0-9.]+, score [0-9.]+", line)]
        assert len(points) == len(record["detections"])
