"""Time per epoch and peak memory against dataset size (1x, 4x, 16x), with the bundle's data path as shipped.

Each size runs the VKD bundle's ``train.json`` through ``ConfigWorkflow`` in a fresh Python process, so
that its peak resident set size belongs to that size alone. The training dataset and its ``cache_rate``
are the config's own; ``num_workers`` is 0 (all memory in the measured process) and validation is off.
The three runs share one text-embedding cache folder, so the later runs also show the cache reused
across runs.

Run as a module, this file is that per-size worker::

    python -m benchmarks.dataset_scaling --datalist D --run-dir R --mode full --threads 2 --output result.json
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from ignite.engine import Events

from benchmarks.bundle_data import (
    REPO_ROOT,
    generate_phantom,
    vkd_overrides,
    vkd_workflow,
    write_vkd_datalist,
)
from benchmarks.report import Figure, GroupReport, Target
from benchmarks.settings import FULL, QUICK, BenchmarkSettings
from benchmarks.timing import Summary, peak_rss_bytes, per_repeat_ratios

__all__ = ["measure_epochs", "run"]

_MIB = 2**20


def measure_epochs(datalist: Path, run_dir: Path, text_cache_dir: Path, settings: BenchmarkSettings) -> dict:
    """Epoch seconds (warm-up dropped), peak RSS and text-encoder calls of one bundle run on ``datalist``."""
    epochs = settings.warmup + settings.scaling_repeats
    overrides = vkd_overrides(
        datalist,
        run_dir,
        settings,
        epochs=epochs,
        val_interval=epochs + 1,
        num_workers=0,
        text_cache_dir=str(text_cache_dir),
        device="$torch.device('cpu')",
    )
    workflow = vkd_workflow(overrides)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    started: list[float] = []
    seconds: list[float] = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: started.append(time.perf_counter()))
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED, lambda _: seconds.append(time.perf_counter() - started[-1])
    )
    workflow.run()
    text_cache = workflow.parser.get_parsed_content("text_encoder")
    dataset = type(workflow.parser.get_parsed_content("train#dataset")).__name__
    cache_rate = workflow.parser.get_parsed_content("train#dataset#cache_rate")
    workflow.finalize()
    return {
        "data_path": f"{dataset}, cache_rate {cache_rate}",
        "epoch_seconds": seconds[settings.warmup :],
        "peak_rss_bytes": peak_rss_bytes(),
        "encoder_calls": text_cache.encoder_calls,
    }


def _run_worker(datalist: Path, run_dir: Path, text_cache_dir: Path, settings: BenchmarkSettings) -> dict:
    output = run_dir / "scaling_result.json"
    command = [
        sys.executable, "-m", "benchmarks.dataset_scaling",
        "--datalist", str(datalist),
        "--run-dir", str(run_dir),
        "--text-cache-dir", str(text_cache_dir),
        "--mode", settings.mode,
        "--threads", str(torch.get_num_threads()),
        "--output", str(output),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"scaling worker for {datalist} failed:\n{completed.stderr[-4000:]}")
    return json.loads(output.read_text())


def run(settings: BenchmarkSettings, work_dir: Path) -> GroupReport:
    """Run one worker per dataset size and compare each size with the 1x base."""
    multipliers = settings.scaling_multipliers
    base = settings.scaling_base_images
    phantom = generate_phantom(work_dir / "phantom", base * max(multipliers))
    text_cache_dir = work_dir / "text_cache"
    results = {}
    for multiplier in multipliers:
        datalist = write_vkd_datalist(
            phantom, work_dir / f"x{multiplier}" / "datalist_vkd.json", base * multiplier
        )
        results[multiplier] = _run_worker(
            datalist, work_dir / f"x{multiplier}" / "run", text_cache_dir, settings
        )
    report = GroupReport(
        name="dataset_scaling",
        title="Time per epoch and peak memory vs dataset size (data path as shipped)",
        setup={
            "image size": f"{settings.image_size} px",
            "batch": settings.batch_size,
            "1x": f"{base} training images",
            "sizes": ", ".join(f"{m}x" for m in multipliers),
            "epochs per size": f"{settings.warmup + settings.scaling_repeats} ({settings.warmup} warm-up)",
            "training dataset": results[multipliers[0]]["data_path"],
            "num_workers": 0,
        },
        notes=[
            "Each size runs in its own process; epoch ratios pair epoch r of one size with epoch r of 1x "
            "(runs taken one after the other, not interleaved).",
            "Peak memory is the process's peak resident set size (Linux VmHWM), imports and models "
            "included, one value per size.",
            "Texts encoded per run (one cache folder shared by the runs, so later runs encode only new "
            "reports): " + ", ".join(f"{m}x: {results[m]['encoder_calls']}" for m in multipliers) + ".",
        ],
    )
    base_seconds = results[multipliers[0]]["epoch_seconds"]
    for multiplier in multipliers:
        seconds = results[multiplier]["epoch_seconds"]
        report.figures.append(
            Figure(f"epoch_seconds_x{multiplier}", f"time per epoch, {multiplier}x", "s", Summary.of(seconds))
        )
    for multiplier in multipliers[1:]:
        seconds = results[multiplier]["epoch_seconds"]
        report.figures.append(
            Figure(
                f"epoch_time_linearity_x{multiplier}",
                f"time per epoch {multiplier}x ÷ ({multiplier} × time per epoch 1x)",
                "ratio",
                Summary.of(per_repeat_ratios(seconds, [multiplier * value for value in base_seconds])),
                Target("<=", 1.10),
            )
        )
    base_rss = results[multipliers[0]]["peak_rss_bytes"]
    for multiplier in multipliers:
        rss = results[multiplier]["peak_rss_bytes"]
        report.figures.append(
            Figure(f"peak_rss_mib_x{multiplier}", f"peak RSS, {multiplier}x", "MiB", Summary.of([rss / _MIB]))
        )
    for multiplier in multipliers[1:]:
        rss = results[multiplier]["peak_rss_bytes"]
        report.figures.append(
            Figure(
                f"peak_rss_ratio_x{multiplier}",
                f"peak RSS {multiplier}x ÷ 1x",
                "ratio",
                Summary.of([rss / base_rss]),
                Target("<=", 1.10),
            )
        )
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.dataset_scaling", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--datalist", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--text-cache-dir", type=Path, required=True)
    parser.add_argument("--mode", choices=("full", "quick"), required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--output", type=Path, required=True)
    arguments = parser.parse_args(argv)
    torch.set_num_threads(arguments.threads)
    logging.disable(logging.INFO)
    settings = FULL if arguments.mode == "full" else QUICK
    result = measure_epochs(arguments.datalist, arguments.run_dir, arguments.text_cache_dir, settings)
    arguments.output.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
