"""The helpers behind the bundles' MLflow tracking settings, and the settings files themselves."""

import json
import os
import time
from pathlib import Path

import mlflow
import pytest
import torch
from monai.data import decollate_batch
from monai.utils import path_to_sqlite_uri

from cxrkd_monai.bundle import (
    bundle_parameters,
    executed_config_file,
    log_report_artifacts,
    tracking_run_name,
    training_scalars,
)

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


def test_bundle_parameters_keep_top_level_literals_only(tmp_path):
    config = {
        "imports": ["$import torch"],
        "learning_rate": 0.0001,
        "epochs": 40,
        "amp": False,
        "backbone_weights": None,
        "image_size": [512, 512],
        "class_names": ["rib_fracture", "clavicle_fracture"],
        "sharpening": "aals",
        "output_dir": "$@bundle_root + '/eval'",
        "network": "@network_def",
        "network_def": {"_target_": "FractureFPN"},
        "nested": [[1, 2]],
        "_meta_": {"version": "0.1.0"},
        "save_execute_config": "/run/eval + '/config_20260101_000000.json'",
        "tracking_uri": "sqlite:////run/mlruns.db",
    }
    path = tmp_path / "config_20260101_000000.json"
    path.write_text(json.dumps(config))
    assert bundle_parameters(path) == {
        "learning_rate": "0.0001",
        "epochs": "40",
        "amp": "False",
        "backbone_weights": "None",
        "image_size": "[512, 512]",
        "class_names": '["rib_fracture", "clavicle_fracture"]',
        "sharpening": "aals",
    }


def test_executed_config_file_is_the_newest_written(tmp_path):
    older, newer = tmp_path / "config_20260101_000000.json", tmp_path / "config_20260101_000001.json"
    for path in (newer, older):
        path.write_text("{}")
    os.utime(older, (time.time() - 60, time.time() - 60))
    (tmp_path / "metrics.json").write_text("{}")
    assert executed_config_file(tmp_path) == str(newer)
    with pytest.raises(FileNotFoundError, match="No executed config"):
        executed_config_file(tmp_path / "empty")


def test_training_scalars_take_the_loss_terms_and_skip_tensors():
    """A trainer's decollated output: the scalars repeated in each item are read once, the tensors skipped."""
    output = decollate_batch(
        {"image": torch.zeros(2, 1, 4, 4), "pred": torch.zeros(2, 3), "loss": torch.tensor(0.5), "kl": 0.25}
    )
    assert training_scalars(output) == {"train_loss": 0.5, "train_kl": 0.25}


def test_run_names_are_unique_to_the_process():
    name = tracking_run_name()
    assert name.startswith("run_") and name.endswith(f"_{os.getpid()}")


def test_both_bundles_ship_the_same_tracking_settings():
    vkd, fracture = (
        BUNDLES / name / "configs" / "mlflow_tracking.json"
        for name in ("cxr_vkd_classification", "cxr_aals_fracture_detection")
    )
    settings = json.loads(vkd.read_text())
    assert settings == json.loads(fracture.read_text())
    assert set(settings["handlers_id"]) == {"trainer", "validator"}
    assert settings["configs"]["trainer"]["_target_"] == "MLFlowHandler"


def test_report_goes_to_the_newest_evaluation_of_its_run_folder(tmp_path):
    tracking_uri = path_to_sqlite_uri(str(tmp_path / "mlruns.db"))
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.create_experiment("bundle", artifact_location=(tmp_path / "mlruns").as_uri())
    run_dir = tmp_path / "eval"
    runs = {}
    for name, folder, evaluation in (
        ("training", run_dir, "False"),
        ("old evaluation", run_dir, "True"),
        ("evaluation", run_dir, "True"),
        ("other folder", tmp_path / "other", "True"),
    ):
        runs[name] = client.create_run(experiment, run_name=name).info.run_id
        client.log_param(runs[name], "output_dir", str(folder))
        client.log_param(runs[name], "tracking_is_evaluation", evaluation)
        time.sleep(0.01)
    report = tmp_path / "report"
    (report / "figures").mkdir(parents=True)
    (report / "report.html").write_text("<html></html>")
    (report / "figures" / "roc.png").write_bytes(b"png")

    assert log_report_artifacts(report, run_dir, tracking_uri, "bundle") == runs["evaluation"]
    logged = {item.path for item in client.list_artifacts(runs["evaluation"], "report")}
    assert logged == {"report/report.html", "report/figures"}
    assert not client.list_artifacts(runs["old evaluation"])
    with pytest.raises(LookupError, match="No tracked evaluation"):
        log_report_artifacts(report, tmp_path / "nowhere", tracking_uri, "bundle")
