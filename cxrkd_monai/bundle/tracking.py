"""Helpers the bundles' MLflow tracking settings (``configs/mlflow_tracking.json``) call from config expressions.

``python -m monai.bundle run ... --tracking configs/mlflow_tracking.json`` patches the run's config with
``MLFlowHandler`` s (MONAI's ``ConfigWorkflow.patch_bundle_tracking``) and first writes the executed config, every
override included, as ``<output_dir>/config_<timestamp>.json``. These functions name the MLflow run, find that
file to log it as an artifact, and read the bundle's hyperparameters from it. :func:`log_report_artifacts` adds an
HTML report, made after the evaluation, to that evaluation's run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cxrkd_monai.utils.optional_imports import import_from_extra

__all__ = ["bundle_parameters", "executed_config_file", "log_report_artifacts", "training_scalars", "tracking_run_name"]

_MLFLOW_PARAM_VALUE_LIMIT = 6000
"""MLflow's limit on the length of a parameter value."""


def tracking_run_name(prefix: str = "run") -> str:
    """A run name unique to this process, ``<prefix>_<YYYYmmdd_HHMMSS>_<pid>``.

    The trainer's and the validator's ``MLFlowHandler`` find their shared run by this name; without one each
    would take the oldest unfinished run of the experiment, which may belong to an earlier, interrupted run.
    """
    return f"{prefix}_{time.strftime('%Y%m%d_%H%M%S')}_{os.getpid()}"


def executed_config_file(output_dir: str | Path) -> str:
    """The newest ``config_*.json`` in ``output_dir``: the executed config MONAI's tracking patch just wrote.

    Raises:
        FileNotFoundError: naming ``output_dir`` when it holds no such file (tracking was not enabled with
            ``save_execute_config`` true).
    """
    candidates = sorted(Path(output_dir).glob("config_*.json"), key=lambda path: path.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(
            f"No executed config (config_*.json) in {str(output_dir)!r}: run with --tracking and save_execute_config "
            "true, which writes it there."
        )
    return str(candidates[-1])


def _is_literal(value: object) -> bool:
    if isinstance(value, str):
        return not value.startswith(("$", "@", "%"))
    if isinstance(value, bool | int | float) or value is None:
        return True
    return isinstance(value, list) and all(_is_literal(v) and not isinstance(v, list | dict) for v in value)


def bundle_parameters(config_file: str | Path) -> dict[str, str]:
    """The top-level literal settings of an executed bundle config, as MLflow parameters.

    A bundle defines its hyperparameters once at the top (``learning_rate``, ``epochs``, ``image_size``, ...);
    those whose value is a literal (a number, string, boolean, null or a flat list of them) are returned as
    strings, lists as JSON. Expressions, references, components and section dicts are left out: they are code
    or structure, recorded whole in the config artifact. So are the tracking settings themselves
    (``tracking_*``, ``save_execute_config``).
    """
    config = json.loads(Path(config_file).read_text())
    parameters = {}
    for key, value in config.items():
        if key.startswith(("_", "tracking_")) or key == "save_execute_config":
            continue
        if isinstance(value, dict) or not _is_literal(value):
            continue
        text = json.dumps(value) if isinstance(value, list) else str(value)
        if len(text) <= _MLFLOW_PARAM_VALUE_LIMIT:
            parameters[key] = text
    return parameters


def training_scalars(output: Sequence[Mapping[str, Any]], prefix: str = "train_") -> dict[str, float]:
    """The scalar entries of a trainer's decollated ``engine.state.output``, named ``<prefix><key>``.

    The bundles' trainers repeat ``loss`` and, for VKD, the loss terms ``bce_posterior``, ``kl`` and
    ``bce_prior`` in every item of their decollated output; they are read from the first item. Entries that are
    tensors with more than one element (images, predictions) are left out.
    """
    scalars = {}
    for key, value in output[0].items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            scalars[f"{prefix}{key}"] = float(value.detach())
        elif isinstance(value, int | float) and not isinstance(value, bool):
            scalars[f"{prefix}{key}"] = float(value)
    return scalars


def log_report_artifacts(report_dir: str | Path, run_dir: str | Path, tracking_uri: str, experiment_name: str) -> str:
    """Log a report folder as the ``report/`` artifacts of the newest tracked evaluation of ``run_dir``.

    The evaluation run is the newest run of ``experiment_name`` whose ``output_dir`` parameter is ``run_dir``
    (the tracking settings record the evaluation's absolute output folder); returns its run id.

    Raises:
        ImportError: MLflow is not installed (extra ``tracking``).
        LookupError: naming the experiment and folder when no tracked evaluation wrote to ``run_dir``.
    """
    mlflow = import_from_extra("mlflow", "tracking", "Logging the report into MLflow")
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    output_dir = os.path.abspath(run_dir)
    runs = (
        client.search_runs(
            [experiment.experiment_id],
            filter_string=f"params.output_dir = '{output_dir}' and params.tracking_is_evaluation = 'True'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if experiment is not None
        else []
    )
    if not runs:
        raise LookupError(
            f"No tracked evaluation in experiment {experiment_name!r} at {tracking_uri} wrote to {output_dir!r}."
        )
    client.log_artifacts(runs[0].info.run_id, str(report_dir), artifact_path="report")
    return runs[0].info.run_id
