"""``--tracking mlflow`` and ``--tracking configs/mlflow_tracking.json`` runs of both bundles write MLflow runs.

Each bundle trains one epoch on a tiny phantom with tracking on (the fracture bundle both stages), and the
MLflow run is read back with ``MlflowClient`` from the local SQLite store: the trainer's loss scalars per
iteration, the validation metrics per epoch, the bundle's hyperparameters and the executed config as an
artifact. The evaluation run adds its metrics and output files. The validation image summaries (inputs, and
the fracture detector's probability maps) are read back from the TensorBoard event files. Plain
``--tracking mlflow`` (MONAI's default settings, which read the loss with ``from_engine(['loss'], first=True)``
from the trainers' decollated output) is checked for both bundles and both fracture stages.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlflow
import pytest
from monai.bundle import ConfigWorkflow
from monai.utils import path_to_sqlite_uri
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

from cxrkd_monai import cli
from cxrkd_monai.phantom import generate_phantom_dataset
from tests.workflows.conftest import FRACTURE_TINY, vkd_tiny_overrides

pytestmark = pytest.mark.slow

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
VKD = BUNDLES / "cxr_vkd_classification"
FRACTURE = BUNDLES / "cxr_aals_fracture_detection"


def run_tracked(
    bundle: Path, config_names: list[str], workflow_type: str, tracking: str | None = None, **overrides
) -> None:
    """Run the bundle's configs with ``tracking`` (default: the bundle's ``configs/mlflow_tracking.json``)."""
    configs = bundle / "configs"
    workflow = ConfigWorkflow(
        config_file=[str(configs / name) for name in config_names],
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        workflow_type=workflow_type,
        tracking=tracking or str(configs / "mlflow_tracking.json"),
        **overrides,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()


def tracked_runs(tracking_uri: str, experiment_name: str) -> list:
    """The experiment's runs, oldest first."""
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None, f"no MLflow experiment {experiment_name!r} in {tracking_uri}"
    return sorted(client.search_runs([experiment.experiment_id]), key=lambda run: run.info.start_time)


def artifact_names(tracking_uri: str, run) -> set[str]:
    return {artifact.path for artifact in mlflow.MlflowClient(tracking_uri).list_artifacts(run.info.run_id)}


def metric_steps(tracking_uri: str, run, key: str) -> list[int]:
    return [metric.step for metric in mlflow.MlflowClient(tracking_uri).get_metric_history(run.info.run_id, key)]


def image_tags(log_dir: Path) -> list[str]:
    accumulator = EventAccumulator(str(log_dir), size_guidance={IMAGES: 0})
    accumulator.Reload()
    return accumulator.Tags()[IMAGES]


def test_vkd_training_and_evaluation_are_tracked_in_mlflow(tmp_path):
    phantom = tmp_path / "phantom"
    generate_phantom_dataset(output_dir=str(phantom), num_patients=12, seed=3, image_size=(72, 64))
    tracking_uri = path_to_sqlite_uri(str(tmp_path / "mlruns.db"))
    overrides = vkd_tiny_overrides(phantom, tmp_path, epochs=1, inference_mc_samples=2, tracking_uri=tracking_uri)
    run_tracked(VKD, ["train.json"], "train", **overrides)
    (train_run,) = tracked_runs(tracking_uri, "CXR VKD classification")
    assert train_run.info.status == "FINISHED"
    metrics = train_run.data.metrics
    assert {"train_loss", "train_kl", "train_bce_prior", "train_bce_posterior", "val_macro_auroc"} <= set(metrics)
    iterations = -(-len(json.loads((phantom / "datalist_vkd.json").read_text())["training"]) // 8)
    assert metric_steps(tracking_uri, train_run, "train_loss") == list(range(1, iterations + 1))
    assert metric_steps(tracking_uri, train_run, "val_macro_auroc") == [1]
    params = train_run.data.params
    assert params["learning_rate"] == "0.001" and params["epochs"] == "1" and params["image_size"] == "[64, 64]"
    assert params["max_epochs"] == "1"
    assert any(
        name.startswith("config_") and name.endswith(".json") for name in artifact_names(tracking_uri, train_run)
    )
    assert {"input_0_HW_0"} <= set(image_tags(tmp_path / "eval"))

    run_tracked(VKD, ["train.json", "evaluate.json"], "eval", **overrides)
    evaluation = tracked_runs(tracking_uri, "CXR VKD classification")[-1]
    assert evaluation.info.run_id != train_run.info.run_id
    assert evaluation.info.status == "FINISHED"
    assert {"val_macro_auroc", "micro_auroc", "ece"} <= set(evaluation.data.metrics)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluation.data.metrics["micro_auroc"] == pytest.approx(saved["micro_auroc"])
    assert {"metrics.json", "predictions.csv"} <= artifact_names(tracking_uri, evaluation)

    # the HTML report of that evaluation joins its run
    run_settings = {key: value for key, value in overrides.items() if key != "tracking_uri"}
    page = cli.report(
        str(tmp_path / "eval"), tracking_uri=tracking_uri, experiment_name="CXR VKD classification",
        datalist=str(phantom / "datalist_vkd.json"), split="test", num_resamples=20, **run_settings,
    )  # fmt: skip
    assert "report" in artifact_names(tracking_uri, evaluation)
    logged = {a.path for a in mlflow.MlflowClient(tracking_uri).list_artifacts(evaluation.info.run_id, "report")}
    assert "report/report.html" in logged and Path(page).name == "report.html"
    with pytest.raises(ValueError, match="both --tracking_uri and --experiment_name"):
        cli.report(str(tmp_path / "eval"), tracking_uri=tracking_uri)


def test_fracture_teacher_and_student_are_tracked_in_mlflow(tmp_path):
    phantom = tmp_path / "phantom"
    generate_phantom_dataset(phantom, num_patients=12, image_size=(64, 64), seed=0)
    root = tmp_path / "bundle_root"
    configs = FRACTURE / "configs"
    teacher, student = str(configs / "train_teacher.json"), str(configs / "train_student.json")
    overrides = {**FRACTURE_TINY, "bundle_root": str(root), "dataset_dir": str(phantom)}
    run_tracked(FRACTURE, [teacher], "train", **overrides)
    run_tracked(FRACTURE, [teacher, student], "train", **overrides)

    tracking_uri = path_to_sqlite_uri(str(root / "mlruns.db"))  # the bundle's default store
    teacher_run, student_run = tracked_runs(tracking_uri, "CXR AALS fracture detection")
    for run in (teacher_run, student_run):
        assert run.info.status == "FINISHED"
        assert {"train_loss", "val_froc", "val_auroc"} <= set(run.data.metrics)
        assert metric_steps(tracking_uri, run, "val_froc") == [1]
        assert any(name.startswith("config_") for name in artifact_names(tracking_uri, run))
    assert teacher_run.data.params["ckpt_name"] == "teacher.pt"
    assert student_run.data.params["ckpt_name"] == "model.pt"
    assert student_run.data.params["sharpening"] == "aals"
    assert "pseudo_positive_rate" in student_run.data.metrics
    tags = set(image_tags(root / "eval"))
    assert {"input_0_HW_0", "output_HW_0", "output_HW_1"} <= tags


def test_plain_tracking_mlflow_tracks_both_bundles_with_monai_default_settings(tmp_path):
    """MONAI's built-in ``mlflow`` settings: one run per training, in ``<output_dir>/mlruns.db``."""
    vkd_phantom, fracture_phantom = tmp_path / "vkd_phantom", tmp_path / "fracture_phantom"
    generate_phantom_dataset(output_dir=str(vkd_phantom), num_patients=12, seed=3, image_size=(64, 64))
    generate_phantom_dataset(fracture_phantom, num_patients=12, image_size=(64, 64), seed=0)
    vkd_root, fracture_root = tmp_path / "vkd_root", tmp_path / "fracture_root"
    vkd_overrides = {
        "bundle_root": str(vkd_root),
        "dataset_dir": str(vkd_phantom),
        "class_names": json.loads((vkd_phantom / "datalist_vkd.json").read_text())["class_names"],
        "image_size": [64, 64],
        "latent_dim": 16,
        "epochs": 1,
        "batch_size": 8,
        "num_workers": 0,
        "inference_mc_samples": 2,
        "pretrained": False,
    }
    run_tracked(VKD, ["train.json"], "train", tracking="mlflow", **vkd_overrides)
    fracture_overrides = {**FRACTURE_TINY, "bundle_root": str(fracture_root), "dataset_dir": str(fracture_phantom)}
    teacher, student = "train_teacher.json", "train_student.json"
    run_tracked(FRACTURE, [teacher], "train", tracking="mlflow", **fracture_overrides)
    run_tracked(FRACTURE, [teacher, student], "train", tracking="mlflow", **fracture_overrides)

    for root, validation_metric, runs_expected in ((vkd_root, "val_macro_auroc", 1), (fracture_root, "val_froc", 2)):
        tracking_uri = path_to_sqlite_uri(str(root / "eval" / "mlruns.db"))
        runs = tracked_runs(tracking_uri, "monai_experiment")
        assert len(runs) == runs_expected
        for run in runs:
            assert run.info.status == "FINISHED"
            steps = metric_steps(tracking_uri, run, "train_loss")
            assert steps and steps == list(range(1, len(steps) + 1)), "one loss per iteration"
            assert all(
                math.isfinite(m.value)
                for m in mlflow.MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "train_loss")
            )
            assert metric_steps(tracking_uri, run, validation_metric) == [1]
            assert any(name.startswith("config_") for name in artifact_names(tracking_uri, run))
    student_run = tracked_runs(path_to_sqlite_uri(str(fracture_root / "eval" / "mlruns.db")), "monai_experiment")[-1]
    assert "pseudo_positive_rate" in student_run.data.metrics
