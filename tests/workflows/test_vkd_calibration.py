"""The VKD bundle's calibration end to end: fitted on validation in training, reported by evaluate, applied by
inference, carried by the exported bundle, refitted by ``cxrkd recalibrate``; and evaluate's bootstrap intervals."""

import csv
import json

import pytest
import torch

from cxrkd_monai.bundle.recalibrate import recalibrate_bundle
from cxrkd_monai.bundle.trained_bundle import export_trained_bundle
from cxrkd_monai.metrics import per_class_auroc
from cxrkd_monai.transforms.calibration import Calibration, temperature_scale
from tests.workflows.conftest import VKD_BUNDLE, vkd_tiny_overrides, vkd_workflow

pytestmark = pytest.mark.slow

NETWORK = ("class_names", "image_size", "latent_dim", "inference_mc_samples")


@pytest.fixture(scope="module")
def trained(phantom, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("vkd_calibration")
    overrides = vkd_tiny_overrides(phantom, run_dir, epochs=2)
    workflow = vkd_workflow(["train.json"], "train", **overrides)
    workflow.run()
    workflow.finalize()
    return run_dir, overrides


def _infer(run_dir, phantom, overrides, name, **extra):
    workflow = vkd_workflow(
        ["inference.json"], "infer", bundle_root=str(VKD_BUNDLE), **{k: overrides[k] for k in NETWORK},
        dataset_dir=str(phantom), datalist_key="validation", num_workers=0, batch_size=overrides["batch_size"],
        ckpt_path=str(run_dir / "models" / "model.pt"), output_dir=str(run_dir / name), **extra,
    )  # fmt: skip
    workflow.run()
    workflow.finalize()
    return json.loads((run_dir / name / "predictions.json").read_text())


def test_training_stores_the_validation_calibration_beside_the_best_model(trained, phantom):
    run_dir, overrides = trained
    calibration = Calibration.load(run_dir / "models" / "calibration.json")
    validation = json.loads((phantom / "datalist_vkd.json").read_text())["validation"]
    assert calibration.class_names == overrides["class_names"]
    assert calibration.fitted_on["num_images"] == len(validation) and calibration.fitted_on["source"] == "validation"
    assert set(calibration.operating_points) == {"youden", "sensitivity", "ppv"}
    assert (calibration.sensitivity_target, calibration.ppv_target) == (0.9, 0.5)


def test_inference_applies_the_stored_temperature_at_the_chosen_operating_point(trained, phantom):
    run_dir, overrides = trained
    names = overrides["class_names"]
    stored = Calibration.load(run_dir / "models" / "calibration.json")
    # a known, far-from-one temperature makes the effect unmistakable
    stored.temperature = [3.0] * len(names)
    (run_dir / "models" / "calibration.json").write_text(stored.to_json())
    for rule in ("youden", "sensitivity"):
        records = _infer(run_dir, phantom, overrides, f"predictions_{rule}", operating_point=rule)
        thresholds = stored.thresholds(rule)
        for record in records:
            probabilities = torch.tensor([record[f"prob_{n}"] for n in names], dtype=torch.float64)
            expected = temperature_scale(probabilities, torch.full((len(names),), 3.0, dtype=torch.float64))
            calibrated = torch.tensor([record[f"calibrated_{n}"] for n in names], dtype=torch.float64)
            # the records hold float32 values
            torch.testing.assert_close(calibrated, expected, atol=1e-6, rtol=1e-5)
            assert record["operating_point"] == rule
            for name, value, threshold in zip(names, expected.tolist(), thresholds):
                if threshold == threshold and abs(value - threshold) > 1e-5:
                    assert record[f"positive_{name}"] == (1.0 if value >= threshold else 0.0)


def test_evaluate_writes_patient_level_intervals_and_the_calibrated_ece(trained, phantom):
    run_dir, overrides = trained
    workflow = vkd_workflow(["train.json", "evaluate.json"], "eval", **overrides, bootstrap_samples=50)
    workflow.run()
    workflow.finalize()
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    bootstrap = metrics["bootstrap"]
    assert (bootstrap["num_resamples"], bootstrap["seed"], bootstrap["confidence"]) == (50, 0, 0.95)
    test_items = json.loads((phantom / "datalist_vkd.json").read_text())["test"]
    assert bootstrap["unit"] == "patient" and bootstrap["num_units"] == len({i["patient_id"] for i in test_items})
    for key in ("val_macro_auroc", "micro_auroc", "macro_f1_at_0.5", "ece", "calibrated_ece"):
        interval = bootstrap["intervals"][key]
        assert interval["estimate"] == pytest.approx(metrics[key], abs=1e-12)
        assert interval["lower"] <= interval["upper"] and interval["num_defined"] > 0
    assert "calibrated_ece" in metrics and metrics["calibrated_ece"] != metrics["ece"]

    # predictions.csv carries the patient and the labels, so the figures can be recomputed from it
    with open(run_dir / "eval" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = overrides["class_names"]
    assert [row["patient_id"] for row in rows] == [item["patient_id"] for item in test_items]
    scores = [[float(row[f"prob_{n}"]) for n in names] for row in rows]
    labels = [[float(row[f"label_{n}"] or "nan") for n in names] for row in rows]
    masks = [[0.0 if row[f"label_{n}"] == "" else 1.0 for n in names] for row in rows]
    for name, value in zip(names, per_class_auroc(scores, labels, masks)):
        if value == value:
            assert metrics[f"val_macro_auroc_{name}"] == pytest.approx(value, abs=1e-6)


def test_exported_bundle_carries_the_calibration_and_recalibrate_refits_it_idempotently(trained, phantom, tmp_path):
    run_dir, overrides = trained
    bundle = export_trained_bundle(
        VKD_BUNDLE, tmp_path / "bundle", run_dir / "models" / "model.pt",
        {k: overrides[k] for k in ("class_names", "image_size", "latent_dim", "pretrained")},
    )  # fmt: skip
    shipped = Calibration.load(bundle / "models" / "calibration.json")
    assert shipped == Calibration.load(run_dir / "models" / "calibration.json")
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert metadata["calibration"]["operating_points"] == shipped.operating_points

    refitted = recalibrate_bundle(bundle, phantom / "datalist_vkd.json", datalist_key="test", ppv_target=0.6)
    test_items = json.loads((phantom / "datalist_vkd.json").read_text())["test"]
    assert refitted.fitted_on["num_images"] == len(test_items) and refitted.fitted_on["source"].endswith(":test")
    assert refitted.ppv_target == 0.6 and refitted != shipped
    files = [bundle / "models" / "calibration.json", bundle / "configs" / "metadata.json"]
    first = [path.read_bytes() for path in files]
    temperatures = json.loads(first[1])["calibration"]["temperature"]
    assert temperatures == dict(zip(overrides["class_names"], refitted.temperature))
    recalibrate_bundle(bundle, phantom / "datalist_vkd.json", datalist_key="test", ppv_target=0.6)
    assert [path.read_bytes() for path in files] == first
