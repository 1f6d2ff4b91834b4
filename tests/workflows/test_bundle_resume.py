"""A training run killed with SIGKILL and resumed with ``--resume True`` ends where an uninterrupted run ends.

Each run is its own ``python -m monai.bundle run`` process on the CPU, with one thread and ``num_workers`` 0, so
the uninterrupted and the resumed run execute the same floating-point operations in the same order: their
final weights must match exactly. Anything the checkpoint forgot (optimiser moments, scheduler position,
augmentation or shuffling generators, the EMA teacher, the β position) makes them differ.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_INFERENCE
from tests.workflows.conftest import FRACTURE_TINY

pytestmark = pytest.mark.slow

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
VKD = BUNDLES / "cxr_vkd_classification"
FRACTURE = BUNDLES / "cxr_aals_fracture_detection"
EPOCHS = 4
CHECKPOINT_EPOCH = re.compile(r"_checkpoint_epoch=(\d+)\.pt$")
RUN_TIMEOUT_S = 600


def _environment() -> dict:
    # one thread and no GPU: the same kernels, in the same order, in every run
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _command(bundle: Path, config_files: list[str], args_file: Path, *extra: str) -> list[str]:
    configs = [str(bundle / "configs" / name) for name in config_files]
    return [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", repr(configs),
        "--meta_file", str(bundle / "configs" / "metadata.json"),
        "--logging_file", str(bundle / "configs" / "logging.conf"),
        "--args_file", str(args_file),
        *extra,
    ]  # fmt: skip


def _write_args(run_dir: Path, overrides: dict) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    args_file = run_dir / "args.json"
    args_file.write_text(json.dumps(overrides))
    return args_file


def _run(command: list[str], log: Path) -> subprocess.CompletedProcess:
    with open(log, "a") as out:
        return subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=_environment(), timeout=RUN_TIMEOUT_S)


def _last_epoch(ckpt_dir: Path, prefix: str) -> int:
    matches = (CHECKPOINT_EPOCH.search(path.name) for path in ckpt_dir.glob(f"{prefix}_checkpoint_epoch=*.pt"))
    return max((int(match.group(1)) for match in matches if match), default=0)


def _kill_mid_epoch(command: list[str], ckpt_dir: Path, prefix: str, log: Path) -> int:
    """Start the run and SIGKILL it once a checkpoint of epoch >= 1 exists and a later epoch is iterating.

    Returns the epoch of the newest checkpoint left behind.
    """
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=_environment())
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            saved = _last_epoch(ckpt_dir, prefix)
            # StatsHandler logs "Epoch: E/N, Iter: I/M" after each iteration of epoch E
            if saved >= 1 and f"Epoch: {saved + 1}/{EPOCHS}, Iter: 1/" in log.read_text():
                assert process.poll() is None, f"the run ended before it could be interrupted:\n{log.read_text()}"
                process.send_signal(signal.SIGKILL)
                process.wait()
                return _last_epoch(ckpt_dir, prefix)
            assert process.poll() is None, f"the run ended before it could be interrupted:\n{log.read_text()}"
            time.sleep(0.05)
        raise AssertionError(f"no checkpoint of epoch >= 1 within {RUN_TIMEOUT_S} s:\n{log.read_text()}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _final_state(ckpt_dir: Path, prefix: str) -> dict:
    path = ckpt_dir / f"{prefix}_checkpoint_epoch={EPOCHS}.pt"
    assert sorted(p.name for p in ckpt_dir.glob(f"{prefix}_checkpoint_*.pt")) == [path.name]
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_tensors_equal(expected: dict, actual: dict, name: str) -> None:
    assert expected.keys() == actual.keys(), name
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0, msg=f"{name}: {key} differs")


def _interrupt_and_resume(bundle: Path, config_files: list[str], overrides: dict, tmp_path: Path, prefix: str):
    """Runs ``EPOCHS`` epochs uninterrupted, and killed then resumed; returns both final checkpoints."""
    reference_dir, resumed_dir = tmp_path / "uninterrupted", tmp_path / "resumed"
    reference_args = _write_args(reference_dir, {**overrides, "bundle_root": str(reference_dir)})
    resumed_args = _write_args(resumed_dir, {**overrides, "bundle_root": str(resumed_dir)})
    log = resumed_dir / "train.log"

    done = _run(_command(bundle, config_files, reference_args), reference_dir / "train.log")
    assert done.returncode == 0, (reference_dir / "train.log").read_text()

    killed_after = _kill_mid_epoch(_command(bundle, config_files, resumed_args), resumed_dir / "models", prefix, log)
    assert 1 <= killed_after < EPOCHS

    resumed = _run(_command(bundle, config_files, resumed_args, "--resume", "True"), log)
    assert resumed.returncode == 0, log.read_text()
    assert f"_checkpoint_epoch={killed_after}.pt" in log.read_text().split("Restored all variables from")[-1]
    return _final_state(reference_dir / "models", prefix), _final_state(resumed_dir / "models", prefix), resumed_dir


def _assert_same_training_state(reference: dict, resumed: dict) -> None:
    _assert_tensors_equal(reference["model"], resumed["model"], "model")
    for group_ref, group_res in zip(reference["optimizer"]["state"].values(), resumed["optimizer"]["state"].values()):
        _assert_tensors_equal(group_ref, group_res, "Adam moments")
    assert resumed["lr_scheduler"] == reference["lr_scheduler"]
    assert resumed["trainer"] == reference["trainer"]
    assert resumed["best_model"] == reference["best_model"]
    assert resumed["best_metric"] == reference["best_metric"]
    torch.testing.assert_close(resumed["random_states"]["torch"], reference["random_states"]["torch"], rtol=0, atol=0)


def _assert_rerun_refuses(bundle: Path, config_files: list[str], run_dir: Path, best_model: str) -> None:
    """A second run into the same folder without --resume stops, and the best model stays byte-identical."""
    best = run_dir / "models" / best_model
    before = best.read_bytes()
    log = run_dir / "rerun.log"
    rerun = _run(_command(bundle, config_files, run_dir / "args.json"), log)
    assert rerun.returncode != 0
    assert "already holds an earlier training run" in log.read_text() and "--resume True" in log.read_text()
    assert best.read_bytes() == before


def test_vkd_run_killed_mid_epoch_resumes_to_the_uninterrupted_weights(phantom, tmp_path):
    class_names = json.loads((phantom / "datalist_vkd.json").read_text())["class_names"]
    overrides = {
        "dataset_dir": str(phantom),
        "class_names": class_names,
        "image_size": [64, 64],
        "epochs": EPOCHS,
        "batch_size": 4,
        "num_workers": 0,
        "learning_rate": 1e-3,
        "pretrained": False,
        **TINY_INFERENCE["cxr_vkd_classification"],  # a small DenseNet: the resumed state is what is checked
    }
    reference, resumed, run_dir = _interrupt_and_resume(VKD, ["train.json"], overrides, tmp_path, "model")
    _assert_same_training_state(reference, resumed)
    _assert_rerun_refuses(VKD, ["train.json"], run_dir, "model.pt")


@pytest.fixture(scope="module")
def stage1_checkpoint(stage1_teacher) -> Path:
    """The shared stage-1 teacher, read by both student runs."""
    return stage1_teacher / "models" / "teacher.pt"



def test_fracture_student_killed_mid_epoch_resumes_to_the_uninterrupted_weights(phantom, stage1_checkpoint, tmp_path):
    overrides = {
        **FRACTURE_TINY,
        "dataset_dir": str(phantom),
        "epochs": EPOCHS,
        "stage1_checkpoint": str(stage1_checkpoint),
    }
    configs = ["train_teacher.json", "train_student.json"]
    reference, resumed, run_dir = _interrupt_and_resume(FRACTURE, configs, overrides, tmp_path, "model")
    _assert_same_training_state(reference, resumed)
    _assert_tensors_equal(reference["teacher"], resumed["teacher"], "EMA teacher")
    # the teacher is an average of student states, not a copy of the final student
    assert any(not torch.equal(reference["teacher"][k], reference["model"][k]) for k in reference["model"])
    _assert_rerun_refuses(FRACTURE, configs, run_dir, "model.pt")
