"""The fracture bundle's evaluate.json: patient-level bootstrap intervals (AUROC, FROC) in metrics.json, patients
and labels in predictions.json (an untrained seeded detector suffices: the intervals are about the evaluation, not
the model)."""

import json

import pytest
import torch
from monai.bundle import ConfigParser

from cxrkd_monai.metrics import per_class_auroc
from tests.conftest import FRACTURE_CONFIGS, run_to_completion
from tests.workflows.conftest import FRACTURE_TEACHER, FRACTURE_TINY, fracture_workflow

pytestmark = pytest.mark.slow


def test_evaluate_writes_patient_level_intervals_and_predictions_with_patients_and_labels(phantom, tmp_path):
    parser = ConfigParser()
    parser.read_config(FRACTURE_TEACHER)
    parser.update(FRACTURE_TINY)
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "model.pt")
    output_dir = tmp_path / "eval"
    run_to_completion(
        fracture_workflow(
            [FRACTURE_TEACHER, str(FRACTURE_CONFIGS / "evaluate.json")],
            "train",
            bundle_root=str(tmp_path),
            dataset_dir=str(phantom),
            ckpt_path=str(tmp_path / "model.pt"),
            output_dir=str(output_dir),
            bootstrap_samples=40,
            bootstrap_seed=2,
        )  # fmt: skip
    )
    metrics = json.loads((output_dir / "metrics.json").read_text())
    bootstrap = metrics["bootstrap"]
    test_items = json.loads((phantom / "datalist_fracture.json").read_text())["test"]
    assert (bootstrap["num_resamples"], bootstrap["seed"], bootstrap["unit"]) == (40, 2, "patient")
    assert bootstrap["num_units"] == len({item["patient_id"] for item in test_items}) < len(test_items)
    # image-level AUROC and the FROC score, each in total and per type, get intervals
    per_type = {
        f"{metric}_{name}" for metric in ("val_auroc", "val_froc") for name in ("rib_fracture", "clavicle_fracture")
    }
    assert set(bootstrap["intervals"]) == {"val_auroc", "val_froc"} | per_type
    for key, interval in bootstrap["intervals"].items():
        assert interval["estimate"] == pytest.approx(metrics[key], abs=1e-12) or metrics[key] is None
        if interval["num_defined"]:
            assert interval["lower"] <= interval["upper"]

    records = json.loads((output_dir / "predictions.json").read_text())
    assert [record["patient_id"] for record in records] == [item["patient_id"] for item in test_items]
    names = ["rib_fracture", "clavicle_fracture"]
    labels = [[record[f"label_{name}"] for name in names] for record in records]
    assert labels == [item["image_label"] for item in test_items]
    scores = [[record[f"{name}_probability"] for name in names] for record in records]
    for name, value in zip(names, per_class_auroc(scores, labels)):
        if value == value:
            assert metrics[f"val_auroc_{name}"] == pytest.approx(value, abs=1e-6)
