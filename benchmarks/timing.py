"""Shared measurement tools: repeat summaries, interleaved timing, peak memory and the machine record.

Every figure of the harness is a ratio of two measurements taken in the same process and, where both
sides are callables, interleaved repeat by repeat (``A B``, ``B A``, ``A B``, ...), so that a burst of
load from another process on a shared machine hits both sides of the same ratio.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata

import torch
from torch.profiler import ProfilerActivity, profile

__all__ = [
    "Summary",
    "interleaved_times",
    "machine_info",
    "peak_rss_bytes",
    "peak_tensor_memory_bytes",
    "per_repeat_ratios",
]


@dataclass(frozen=True)
class Summary:
    """Median and spread of repeated measurements of one quantity.

    ``q1`` and ``q3`` are the quartiles (inclusive method, so two repeats give their own values), and
    ``minimum`` / ``maximum`` the range. ``repeats`` is the number of values, warm-up excluded.

    Example::

        Summary.of([1.0, 2.0, 4.0])  # median 2.0, q1 1.5, q3 3.0, minimum 1.0, maximum 4.0, repeats 3
    """

    median: float
    q1: float
    q3: float
    minimum: float
    maximum: float
    repeats: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        values = [float(value) for value in values]
        if not values:
            raise ValueError("values must hold at least one measurement, got an empty sequence.")
        if len(values) == 1:
            q1 = q3 = values[0]
        else:
            q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(statistics.median(values), q1, q3, min(values), max(values), len(values))

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def interleaved_times(
    candidates: Mapping[str, Callable[[], object]], repeats: int, warmup: int
) -> dict[str, list[float]]:
    """Wall-clock seconds of each candidate per repeat, the candidates run in a rotating order.

    Repeat ``r`` starts with candidate ``r mod k``, so no candidate always runs first (right after the
    previous repeat) or last. The first ``warmup`` rounds run every candidate but are not kept.

    Args:
        candidates: name -> a callable doing one unit of work (its result is ignored).
        repeats: kept rounds, at least 1.
        warmup: discarded rounds before them.

    Returns:
        name -> ``repeats`` durations in seconds, in round order, so that index ``r`` of two candidates
        forms a pair measured back to back.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}.")
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            candidates[name]()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[name].append(elapsed)
    return times


def per_repeat_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """``numerators[r] / denominators[r]`` for every repeat ``r`` (pairs measured back to back)."""
    if len(numerators) != len(denominators):
        raise ValueError(
            f"numerators and denominators must pair up, got {len(numerators)} and {len(denominators)} values."
        )
    return [numerator / denominator for numerator, denominator in zip(numerators, denominators)]


def peak_tensor_memory_bytes(function: Callable[[], object]) -> int:
    """Peak CPU tensor memory allocated while ``function`` runs, above what was allocated before it.

    The torch profiler records, with ``profile_memory=True``, the bytes each operator allocates (its own
    allocations, children excluded) and every later free. Replaying those records in time order gives
    the running total of live tensor memory, whose maximum is returned. Memory held by Python objects or
    by libraries outside torch's CPU allocator is not counted; ``tracemalloc`` would miss the tensors.
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        function()
    events = sorted(profiler.events(), key=lambda event: event.time_range.start)
    live = peak = 0
    for event in events:
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far.

    Linux's ``VmHWM`` is used where available: ``getrusage``'s ``ru_maxrss`` survives ``exec``, so in a
    child started by a large parent it would report the parent's peak at fork time.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, object]:
    """The machine and software a run measured: CPU, cores, threads, load, and package versions."""
    usable_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": _version("monai"),
        "pytorch-ignite": _version("pytorch-ignite"),
        "numpy": _version("numpy"),
        "transformers": _version("transformers"),
        "onnxruntime": _version("onnxruntime"),
        "cuda_available": torch.cuda.is_available(),
    }
