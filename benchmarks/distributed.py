"""Two-process DDP on the CPU (gloo) against one process: training step time of the VKD network.

Each configuration runs in freshly spawned processes that join a gloo process group (rendezvous through a
file, so no TCP port can be taken by another job) and wrap the network with the package's ``wrap_ddp``
and DDP-safe ``VKDTrainingStep`` adapter, with the
same per-process batch on in-memory tensors, and the torch threads split between the processes so that
both configurations use the same cores. A step is forward, backward (with the gradient all-reduce) and
Adam step; the time of each step is the slowest rank's.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from monai.bundle import ConfigParser

from benchmarks.bundle_data import VKD_BUNDLE
from benchmarks.report import Figure, GroupReport
from benchmarks.settings import FULL, QUICK, BenchmarkSettings
from benchmarks.timing import Summary, per_repeat_ratios
from cxrkd_monai.engines import VKDTrainingStep, wrap_ddp

__all__ = ["run"]


_TIMEOUT_SECONDS = 300


def _worker(rank: int, world_size: int, mode: str, threads: int, rendezvous: str, output: str) -> None:
    settings = FULL if mode == "full" else QUICK
    torch.set_num_threads(threads)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{rendezvous}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=_TIMEOUT_SECONDS),
    )
    parser = ConfigParser()
    parser.read_config(str(VKD_BUNDLE / "configs" / "train.json"))
    parser.update({"latent_dim": settings.latent_dim, "device": "$torch.device('cpu')"})
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def", lazy=False)
    training_step = wrap_ddp(VKDTrainingStep(network), "cpu")
    loss_function = parser.get_parsed_content("loss", lazy=False)
    optimizer = torch.optim.Adam(network.parameters(), lr=parser.get_parsed_content("learning_rate"))
    size = settings.image_size
    torch.manual_seed(rank)
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
    if rank == 0:
        Path(output).write_text(json.dumps({"step_seconds": step_seconds, "threads_per_process": threads}))
    dist.destroy_process_group()


def _step_seconds(world_size: int, settings: BenchmarkSettings, work_dir: Path) -> dict:
    output = work_dir / f"world_{world_size}.json"
    rendezvous = work_dir / f"rendezvous_{world_size}"
    rendezvous.unlink(missing_ok=True)
    threads = max(1, torch.get_num_threads() // world_size)
    arguments = (world_size, settings.mode, threads, str(rendezvous), str(output))
    context = mp.start_processes(_worker, args=arguments, nprocs=world_size, start_method="spawn", join=False)
    deadline = time.monotonic() + 2 * _TIMEOUT_SECONDS
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            raise TimeoutError(
                f"{world_size}-process DDP workers did not finish within {2 * _TIMEOUT_SECONDS} s."
            )
    return json.loads(output.read_text())


def run(settings: BenchmarkSettings, work_dir: Path) -> GroupReport:
    """Measure DDP step time with 2 processes against 1 process."""
    work_dir.mkdir(parents=True, exist_ok=True)
    single = _step_seconds(1, settings, work_dir)
    double = _step_seconds(2, settings, work_dir)
    step_ratios = per_repeat_ratios(double["step_seconds"], single["step_seconds"])
    return GroupReport(
        name="distributed",
        title="2-process DDP (CPU, gloo) against 1 process",
        setup={
            "image size": f"{settings.image_size} px",
            "batch per process": settings.batch_size,
            "threads per process": f"1 process: {single['threads_per_process']}, "
            f"2 processes: {double['threads_per_process']}",
            "timed steps": settings.ddp_steps,
            "warm-up steps": settings.warmup,
        },
        notes=[
            "Step i of the 2-process run is paired with step i of the 1-process run (runs one after the "
            "other).",
            "Each process gets the harness's torch threads divided by the number of processes, at least 1; "
            "2 processes do twice the images per step.",
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
            Figure.not_measured(
                "ddp_final_metric_difference",
                "final validation AUROC, 2 processes vs 1",
                "ratio",
                "training to convergence twice does not fit the harness's 10-minute budget",
            ),
        ],
    )
