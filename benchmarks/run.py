"""Run the benchmark harness and write ``benchmarks/results.json`` and ``docs/benchmarks.md``.

Usage::

    python -m benchmarks.run            # full run (make bench), a few minutes on a 2-core CPU
    python -m benchmarks.run --quick    # a few iterations at 32 px, outputs in the work folder (CI)
    python -m benchmarks.run --only vkd_cost training_loop   # updates those groups, keeps the others

A group that raises is reported as "not measured" with its error, the others still run, and the exit
status is 1, so that a quick run in CI fails when a benchmark rots.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from benchmarks import (
    backbone_cost,
    dataset_scaling,
    distributed,
    export_formats,
    fracture_cost,
    loader_throughput,
    memory_scaling,
    text_cache_scale,
    training_loop,
    vkd_cost,
)
from benchmarks.bundle_data import REPO_ROOT
from benchmarks.report import Figure, GroupReport, merge_groups, read_groups, write_json, write_markdown
from benchmarks.settings import FULL, QUICK, BenchmarkSettings
from benchmarks.timing import machine_info

__all__ = ["GROUPS", "main", "run_groups"]

GROUPS: dict[str, Callable[[BenchmarkSettings, Path], GroupReport]] = {
    "vkd_cost": vkd_cost.run,
    "training_loop": training_loop.run,
    "export_formats": export_formats.run,
    "dataset_scaling": dataset_scaling.run,
    "memory_scaling": memory_scaling.run,
    "loader_throughput": loader_throughput.run,
    "text_cache_scale": text_cache_scale.run,
    "fracture_cost": fracture_cost.run,
    "distributed": distributed.run,
    "backbone_cost": backbone_cost.run,
}
"""Benchmark groups in the order they run: name -> ``run(settings, work_dir)``."""


def _gpu_report() -> GroupReport:
    """The GPU section the issue asks for; filled only by a run on a GPU machine."""
    reason = "this run had no GPU (torch.cuda.is_available() is False)"
    figures = [
        Figure.not_measured(
            f"gpu_{bundle}_{size}px_{precision}_raw_step_ratio",
            f"{label} training images/s ÷ raw step, {size} px, {precision}",
            "ratio",
            reason,
        )
        for bundle, label in (("vkd", "VKD"), ("fracture", "fracture student"))
        for size in (224, 512)
        for precision in ("fp32", "amp")
    ]
    return GroupReport(
        name="gpu", title="GPU (H100 / H200): images/s against the GPU's raw-step limit", figures=figures
    )


def _failed_group(name: str, error: BaseException) -> GroupReport:
    reason = f"the benchmark raised {type(error).__name__}: {error}"
    return GroupReport(name=name, title=name, figures=[Figure.not_measured(name, name, "ratio", reason)])


def run_groups(
    names: Sequence[str], settings: BenchmarkSettings, work_dir: Path
) -> tuple[list[GroupReport], list[str]]:
    """Run the named groups in ``work_dir``; returns their reports and the names of those that failed."""
    reports, failed = [], []
    for name in names:
        group_dir = work_dir / name
        group_dir.mkdir(parents=True, exist_ok=True)
        print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            report = GROUPS[name](settings, group_dir)
        except Exception as error:  # one broken group must not hide the other groups' figures
            traceback.print_exc()
            report = _failed_group(name, error)
            failed.append(name)
        report.wall_seconds = time.perf_counter() - start
        print(f"[benchmarks] {name} done in {report.wall_seconds:.0f} s", file=sys.stderr, flush=True)
        reports.append(report)
    return reports, failed


def _load_notes(start_load: float, machine: dict) -> list[str]:
    end_load = os.getloadavg()[0]
    machine["load_average_1min_end"] = round(end_load, 2)
    cores = machine["usable_cores"] or 1
    if max(start_load, end_load) <= 0.5 * cores:
        return []
    return [
        f"Shared {cores}-core CPU under concurrent load (1-minute load average {start_load:.1f} at the "
        f"start, {end_load:.1f} at the end): absolute times are noisy; the ratios pair measurements taken "
        "back to back."
    ]


def _parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few iterations at tiny sizes (CI)")
    parser.add_argument("--only", nargs="+", choices=list(GROUPS), help="run only these groups")
    parser.add_argument(
        "--work-dir", type=Path, help="folder for generated data and runs (default: temporary)"
    )
    parser.add_argument(
        "--json", type=Path, help="results file (default: benchmarks/results.json; quick: work dir)"
    )
    parser.add_argument(
        "--markdown", type=Path, help="table file (default: docs/benchmarks.md; quick: work dir)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a CPU shared with other jobs, extra threads mostly wait "
        "on each other, which adds noise and no information to a ratio)",
    )
    return parser.parse_args(argv)


def _run(arguments: argparse.Namespace) -> tuple[Path, Path, list[str]]:
    settings = QUICK if arguments.quick else FULL
    names = arguments.only or list(GROUPS)
    with tempfile.TemporaryDirectory(prefix="cxrkd_bench_") as temporary:
        # A quick run must not overwrite the published full-run files, so its outputs stay in a work folder
        # that outlives the run.
        default_work_dir = (
            Path(tempfile.gettempdir()) / "cxrkd_bench_quick" if arguments.quick else Path(temporary)
        )
        work_dir = (arguments.work_dir or default_work_dir).resolve()
        work_dir.mkdir(parents=True, exist_ok=True)
        json_path = (
            arguments.json or (work_dir if arguments.quick else REPO_ROOT / "benchmarks") / "results.json"
        )
        markdown_path = (
            arguments.markdown or (work_dir if arguments.quick else REPO_ROOT / "docs") / "benchmarks.md"
        )
        machine = machine_info()
        start_load = machine["load_average_1min"]
        start = time.perf_counter()
        reports, failed = run_groups(names, settings, work_dir)
        reports.append(_gpu_report())
        notes = _load_notes(start_load, machine)
        notes.append(
            f"Total wall time {time.perf_counter() - start:.0f} s with {arguments.threads} torch thread(s)."
        )
        if failed:
            notes.append(f"Groups that failed: {', '.join(failed)}.")
        if arguments.only and not arguments.quick:
            # A partial full run updates its groups in the published files and keeps the others' figures.
            reports, carried = merge_groups(read_groups(json_path), reports, [*GROUPS, "gpu"])
            if carried:
                notes.append(
                    f"This run measured {', '.join(names)} only; {', '.join(carried)} are carried over from the "
                    "previous run of the published files (the machine lines above describe this run)."
                )
        machine_and_settings = {**machine, "settings": settings.as_dict()}
        write_json(json_path, settings.mode, machine_and_settings, reports, notes)
        write_markdown(markdown_path, settings.mode, machine, reports, notes)
    return json_path, markdown_path, failed


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parse_arguments(argv)
    if arguments.threads < 1:
        raise ValueError(f"--threads must be a positive integer, got {arguments.threads}.")
    torch.set_num_threads(arguments.threads)
    # Per-iteration loss lines of the bundles' StatsHandlers would bury the harness's own progress lines.
    logging.disable(logging.INFO)
    try:
        json_path, markdown_path, failed = _run(arguments)
    finally:
        logging.disable(logging.NOTSET)
    print(f"[benchmarks] wrote {json_path} and {markdown_path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
