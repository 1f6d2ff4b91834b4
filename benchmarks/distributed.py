"""Two-process DDP on the CPU (gloo) against one process: VKD training step time and final validation AUROC.

Each configuration is one ``torchrun --standalone`` launch, the way users start ``multi_gpu_train.json``, with
the torch threads split between the processes so that both configurations use the same cores. Every process
runs this module as its worker (``python -m benchmarks.distributed``):

1. the step timing: the network is wrapped with the package's ``wrap_ddp`` and DDP-safe ``VKDTrainingStep``
   adapter, with the same per-process batch on in-memory tensors. A step is forward, backward (with the
   gradient all-reduce) and Adam step; the time of each step is the slowest rank's.
2. the final metric: the VKD bundle's ``train.json`` + ``multi_gpu_train.json`` on a phantom dataset for the
   same number of epochs, then rank 0 reads the validation macro AUROC of the last epoch. With 2 processes
   each epoch has half the steps of twice the images (the ``DistributedSampler`` splits the data).

One process runs under ``torchrun`` too (a world of 1), so both configurations pay the same launch and the
same DDP wrapper.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from monai.bundle import ConfigParser

from benchmarks.bundle_data import REPO_ROOT, VKD_BUNDLE, generate_phantom, vkd_overrides, vkd_workflow
from benchmarks.report import Figure, GroupReport
from benchmarks.settings import FULL, QUICK, BenchmarkSettings
from benchmarks.timing import Summary, per_repeat_ratios
from cxrkd_monai.engines import VKDTrainingStep
from cxrkd_monai.utils import init_distributed, wrap_ddp

__all__ = ["run"]

_LAUNCH_TIMEOUT_SECONDS = {"full": 900, "quick": 300}
"""Seconds one ``torchrun`` launch may take; the quick limit leaves the CI test's own 900 s room to report it."""


def _time_ddp_steps(settings: BenchmarkSettings) -> list[float]:
    """Seconds of each timed DDP training step, the slowest rank's, on in-memory tensors."""
    parser = ConfigParser()
    parser.read_config(str(VKD_BUNDLE / "configs" / "train.json"))
    # ImageNet weights would be downloaded on first use; the benchmark times steps, not initialisation.
    parser.update({"latent_dim": settings.latent_dim, "device": "$torch.device('cpu')", "pretrained": False})
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def", lazy=False)
    training_step = wrap_ddp(VKDTrainingStep(network), "cpu")
    loss_function = parser.get_parsed_content("loss", lazy=False)
    optimizer = torch.optim.Adam(network.parameters(), lr=parser.get_parsed_content("learning_rate"))
    size = settings.image_size
    torch.manual_seed(dist.get_rank())
    images = torch.rand(settings.batch_size, 1, size, size)
    text_features = torch.randn(settings.batch_size, parser.get_parsed_content("text_feature_dim"))
    labels = (torch.rand(settings.batch_size, parser.get_parsed_content("num_classes")) > 0.5).float()
    step_seconds = []
    for step in range(settings.warmup + settings.ddp_steps):
        dist.barrier()
        start = time.perf_counter()
        optimizer.zero_grad()
        loss_function(training_step(images, text_features, 1), labels)["loss"].backward()
        optimizer.step()
        elapsed = torch.tensor(time.perf_counter() - start, dtype=torch.float64)
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        if step >= settings.warmup:
            step_seconds.append(float(elapsed))
    return step_seconds


def _final_validation_auroc(settings: BenchmarkSettings, phantom: Path, run_dir: Path) -> float:
    """Train the VKD bundle's multi-GPU workflow for ``settings.ddp_epochs`` and return the last val AUROC."""
    overrides = vkd_overrides(
        phantom / "datalist_vkd.json",
        run_dir,
        settings,
        epochs=settings.ddp_epochs,
        val_interval=settings.ddp_epochs,
        num_workers=0,
    )
    workflow = vkd_workflow(overrides, ("train.json", "multi_gpu_train.json"))
    workflow.run()
    auroc = float(workflow.parser.get_parsed_content("validate#evaluator").state.metrics["val_macro_auroc"])
    workflow.finalize()
    return auroc


def _worker(mode: str, phantom: Path, output: Path) -> None:
    """One ``torchrun`` process: the step timing, then the bundle run; rank 0 writes ``output``."""
    settings = FULL if mode == "full" else QUICK
    init_distributed()
    step_seconds = _time_ddp_steps(settings)
    world_size, rank = dist.get_world_size(), dist.get_rank()
    auroc = _final_validation_auroc(settings, phantom, output.parent / f"bundle_run_{world_size}")
    if rank == 0:
        output.write_text(
            json.dumps(
                {
                    "step_seconds": step_seconds,
                    "threads_per_process": torch.get_num_threads(),
                    "final_val_macro_auroc": auroc,
                }
            )
        )


def _launch(world_size: int, settings: BenchmarkSettings, phantom: Path, work_dir: Path) -> dict:
    """Run the worker under ``torchrun --standalone`` with ``world_size`` processes; rank 0's results."""
    output = work_dir / f"world_{world_size}.json"
    output.unlink(missing_ok=True)
    threads = max(1, torch.get_num_threads() // world_size)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={world_size}",
        "-m",
        "benchmarks.distributed",
        "--mode",
        settings.mode,
        "--phantom",
        str(phantom),
        "--output",
        str(output),
    ]
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
    try:
        completed = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=_LAUNCH_TIMEOUT_SECONDS[settings.mode],
        )
    except subprocess.TimeoutExpired as error:
        stderr = (error.stderr or b"")[-3000:]
        stderr = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
        raise TimeoutError(
            f"torchrun with {world_size} processes did not finish within {_LAUNCH_TIMEOUT_SECONDS[settings.mode]} s; "
            f"its stderr ended with:\n{stderr}"
        ) from error
    if completed.returncode != 0 or not output.is_file():
        raise RuntimeError(
            f"torchrun with {world_size} processes exited with {completed.returncode} "
            f"(results file written: {output.is_file()}); its stderr ended with:\n{completed.stderr[-3000:]}"
        )
    return json.loads(output.read_text())


def run(settings: BenchmarkSettings, work_dir: Path) -> GroupReport:
    """Measure DDP step time and final validation AUROC with 2 processes against 1 process."""
    work_dir.mkdir(parents=True, exist_ok=True)
    phantom = generate_phantom(work_dir / "phantom", settings.ddp_training_images)
    single = _launch(1, settings, phantom, work_dir)
    double = _launch(2, settings, phantom, work_dir)
    step_ratios = per_repeat_ratios(double["step_seconds"], single["step_seconds"])
    auroc_1, auroc_2 = single["final_val_macro_auroc"], double["final_val_macro_auroc"]
    validation_images = len(json.loads((phantom / "datalist_vkd.json").read_text())["validation"])
    return GroupReport(
        name="distributed",
        title="2-process DDP (CPU, gloo, torchrun) against 1 process",
        setup={
            "image size": f"{settings.image_size} px",
            "batch per process": settings.batch_size,
            "threads per process": f"1 process: {single['threads_per_process']}, "
            f"2 processes: {double['threads_per_process']}",
            "timed steps": settings.ddp_steps,
            "warm-up steps": settings.warmup,
            "bundle run": f"{settings.ddp_epochs} epochs on the phantom's training split, "
            f"validated on its {validation_images} validation images",
        },
        notes=[
            "Step i of the 2-process run is paired with step i of the 1-process run (runs one after the "
            "other).",
            "Each process gets the harness's torch threads divided by the number of processes, at least 1; "
            "2 processes do twice the images per step.",
            f"Final validation macro AUROC after the same epochs: {auroc_1:.3f} with 1 process, "
            f"{auroc_2:.3f} with 2, a difference of {auroc_2 - auroc_1:+.3f} (2 processes take half the "
            "optimizer steps per epoch, at twice the global batch).",
        ],
        figures=[
            Figure(
                "ddp_step_time_ratio",
                "2-process step time ÷ 1-process step time",
                "ratio",
                Summary.of(step_ratios),
            ),
            Figure(
                "ddp_throughput_ratio",
                "2-process images/s ÷ 1-process images/s",
                "ratio",
                Summary.of([2.0 / ratio for ratio in step_ratios]),
            ),
            *(
                Figure(
                    f"ddp_final_val_auroc_{world_size}_process",
                    f"final validation macro AUROC, {world_size} process{'es' if world_size > 1 else ''}",
                    "AUROC",
                    Summary.of([auroc]),
                )
                for world_size, auroc in ((1, auroc_1), (2, auroc_2))
            ),
        ],
    )


def _parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.distributed", description="worker of the DDP benchmark (run by torchrun)"
    )
    parser.add_argument("--mode", choices=("full", "quick"), required=True)
    parser.add_argument("--phantom", type=Path, required=True, help="phantom dataset folder")
    parser.add_argument("--output", type=Path, required=True, help="results file written by rank 0")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = _parse_arguments(None)
    _worker(arguments.mode, arguments.phantom, arguments.output)
