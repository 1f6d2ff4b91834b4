"""Fixtures and helpers shared by the whole-workflow tests of both bundles.

Test modules import the helpers as ``from tests.workflows.conftest import vkd_workflow`` (like
``tests/conftest.py``); pytest itself provides the fixtures.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigWorkflow
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from cxrkd_monai.data.preprocessed_store import INDEX_DTYPE
from tests.conftest import BUNDLES, FRACTURE_CONFIGS, VKD_CONFIGS, config_workflow, run_to_completion

VKD_BUNDLE = BUNDLES / "cxr_vkd_classification"
FRACTURE_BUNDLE = BUNDLES / "cxr_aals_fracture_detection"
FRACTURE_TEACHER = str(FRACTURE_CONFIGS / "train_teacher.json")
FRACTURE_STUDENT = str(FRACTURE_CONFIGS / "train_student.json")
# The fracture bundle with a tiny detector: 64 x 64 input, one epoch; tests override what they vary.
FRACTURE_TINY = {
    "image_size": [64, 64],
    "epochs": 1,
    "batch_size": 4,
    "num_workers": 0,
    "layers": [1, 1, 1, 1],
    "block_inplanes": [8, 16, 32, 64],
    "fpn_channels": 8,
    "pretrained": False,
}


def fracture_workflow(
    config_files: str | Path | Sequence[str | Path], workflow_type: str, **overrides
) -> ConfigWorkflow:
    """The fracture bundle's ``config_files`` with the tiny detector (:data:`FRACTURE_TINY`), initialised."""
    return config_workflow(config_files, workflow_type, **{**FRACTURE_TINY, **overrides})


@pytest.fixture(scope="session")
def stage1_teacher(phantom: Path, tmp_path_factory) -> Path:
    """The bundle root of a stage-1 teacher of the tiny detector (:data:`FRACTURE_TINY`, one epoch) trained once on
    the ``phantom`` for every module that needs one: ``models/teacher.pt`` and ``models/teacher_calibration.json``.
    Read it in place; train or write into :func:`copy_of_bundle_root` of it."""
    root = tmp_path_factory.mktemp("stage1_teacher")
    teacher = run_to_completion(
        fracture_workflow([FRACTURE_TEACHER], "train", bundle_root=str(root), dataset_dir=str(phantom))
    )
    assert teacher.trainer.state.epoch == 1
    assert "val_froc" in teacher.evaluator.state.metrics and "val_auroc" in teacher.evaluator.state.metrics
    assert (root / "models" / "teacher.pt").is_file()
    return root


def copy_of_bundle_root(root: Path, tmp_path_factory) -> Path:
    """A copy of the bundle root ``root`` (checkpoints, calibration, logs) in a new temporary folder."""
    copy = tmp_path_factory.mktemp(root.name) / "bundle_root"
    shutil.copytree(root, copy)
    return copy


def vkd_tiny_overrides(phantom: Path, run_dir: Path, **extra) -> dict:
    """Overrides that train the VKD bundle small and fast (64 x 64 input, latent size 16, 4 epochs) on the
    ``phantom`` dataset, writing checkpoints, evaluation output and the text cache under ``run_dir``; ``extra``
    replaces or adds entries."""
    class_names = json.loads((phantom / "datalist_vkd.json").read_text())["class_names"]
    overrides = {
        "bundle_root": str(VKD_BUNDLE),
        "dataset_dir": str(phantom),
        "ckpt_dir": str(run_dir / "models"),
        "output_dir": str(run_dir / "eval"),
        "text_cache_dir": str(run_dir / "text_cache"),
        "class_names": class_names,
        "image_size": [64, 64],
        "latent_dim": 16,
        "epochs": 4,
        "batch_size": 8,
        "num_workers": 0,
        "learning_rate": 1e-3,
        "inference_mc_samples": 4,
        "pretrained": False,
    }
    overrides.update(extra)
    return overrides


def vkd_workflow(config_names: Sequence[str], workflow_type: str, **overrides) -> ConfigWorkflow:
    """The VKD bundle's configs named ``config_names`` (files in its ``configs/``), initialised."""
    return config_workflow([VKD_CONFIGS / name for name in config_names], workflow_type, **overrides)


def _processes_with_scalars(log_dir: Path) -> set[str]:
    """Process ids (from the event file names ``events.out.tfevents.<time>.<host>.<pid>.<n>``) that logged values."""
    writers = set()
    for path in Path(log_dir).glob("events.out.tfevents.*"):
        if any(event.summary.value for event in EventFileLoader(str(path)).Load()):
            writers.add(path.name.split(".")[-2])
    return writers


@pytest.fixture
def tensorboard_writers() -> Callable[[Path], set[str]]:
    """``tensorboard_writers(log_dir)``: the processes whose TensorBoard event files in ``log_dir`` hold values.

    Under DDP every rank builds the config's components, rank-0-only logging handlers included (an unused
    TensorBoard writer leaves an event file with no values); only rank 0 attaches and so logs them.
    """
    return _processes_with_scalars


def cache_index(cache_dir: Path) -> np.ndarray:
    """Every committed record of every setting of the preprocessed cache under ``cache_dir``."""
    parts = [np.load(path) for path in sorted(Path(cache_dir).glob("v*/shard-*.idx.npy"))]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=INDEX_DTYPE)


def unique_images(datalist: Path, keys: Sequence[str] = ("training", "validation")) -> int:
    """The number of distinct image paths among the ``keys`` splits of a datalist file."""
    content = json.loads(Path(datalist).read_text())
    return len({item["image"] for key in keys for item in content[key]})


class ValidatedItemsRecorder:
    """Records, in one process of a (possibly distributed) run, every item its evaluator validated.

    An extra bundle config creates it and attaches it in ``initialize``; at the end of each evaluation it writes
    ``validated_rank<r>.json`` into ``output_dir``: the items' image paths, their probabilities, labels and label
    masks (each ``(C,)``), the evaluator's ``val_macro_auroc`` and the world size.
    """

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)
        self.records: dict[str, list] = {"images": [], "pred_prob": [], "label": [], "label_mask": []}

    def attach(self, evaluator: Engine) -> None:
        evaluator.add_event_handler(Events.ITERATION_COMPLETED, self._record_items)
        evaluator.add_event_handler(Events.COMPLETED, self._write)

    def _record_items(self, engine: Engine) -> None:
        for item, output in zip(engine.state.batch, engine.state.output):
            self.records["images"].append(str(item["image"].meta["filename_or_obj"]))
            self.records["pred_prob"].append(output["pred_prob"].tolist())
            self.records["label"].append(item["label"].tolist())
            self.records["label_mask"].append(item["label_mask"].tolist())

    def _write(self, engine: Engine) -> None:
        distributed = torch.distributed.is_initialized()
        rank = torch.distributed.get_rank() if distributed else 0
        record = {
            **self.records,
            "val_macro_auroc": float(engine.state.metrics["val_macro_auroc"]),
            "world_size": torch.distributed.get_world_size() if distributed else 1,
        }
        (self.output_dir / f"validated_rank{rank}.json").write_text(json.dumps(record))
        self.records = {key: [] for key in self.records}
