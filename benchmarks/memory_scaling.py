"""Peak resident memory per process against dataset size: the preprocessed cache against ``CacheDataset``.

Each (data path, size) pair runs in a fresh Python process, so that its peak resident set size (Linux
``VmHWM``, imports included) belongs to that size alone. The process builds the training dataset the way
the bundle does and reads one shuffled epoch of it through a ``DataLoader`` (``num_workers=0``, so every
byte is in the measured process), the items decoded to float32 at the bundle's image size:

- ``preprocessed_cache``: the bundles' default data path, items read from the on-disk cache, built
  beforehand by the parent process;
- ``cache_dataset``: the bundles' earlier default, MONAI ``CacheDataset`` with ``cache_rate`` 1.0, holding
  every item as float32 in RAM. Measured at small sizes only and extrapolated linearly to MIMIC-CXR's
  377,110 images: allocating those 75 GB is what the cache exists to avoid.

The epoch reads items without the random augmentation: its buffers live for one batch, whatever the dataset
size, and at 7 ms an image it would turn a 100k-item epoch into a quarter of an hour on one core.

Run as a module, this file is the per-size worker::

    python -m benchmarks.memory_scaling --data-path preprocessed_cache --datalist D --cache-dir C \\
        --image-size 224 --batch-size 30 --output result.json
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

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader
from monai.transforms import Compose, EnsureTyped

from benchmarks.bundle_data import REPO_ROOT
from benchmarks.report import Figure, GroupReport, Target
from benchmarks.scale_items import phantom_sources, write_repeated_items, write_vkd_datalist
from benchmarks.settings import BenchmarkSettings
from benchmarks.timing import Summary, peak_rss_bytes
from benchmarks.vkd_transforms import vkd_train_config
from cxrkd_monai.data import CachedPreprocessingd, PreprocessedCacheDataset, build_preprocessed_cache
from cxrkd_monai.data.datalist import load_class_names, load_datalist

__all__ = ["MIMIC_CXR_IMAGES", "extrapolate", "run"]

MIMIC_CXR_IMAGES = 377_110
_MIB = 2**20
DATA_PATHS = ("preprocessed_cache", "cache_dataset")


def extrapolate(sizes: Sequence[int], values: Sequence[float], size: int) -> tuple[float, float]:
    """Least-squares line through ``(sizes, values)``: its value at ``size`` and its slope per item.

    Example::

        extrapolate([100, 200], [10.0, 12.0], 1000)   # (28.0, 0.02)
    """
    if len(sizes) != len(values) or len(set(sizes)) < 2:
        raise ValueError(f"need values at two or more distinct sizes, got sizes {list(sizes)}.")
    slope, intercept = np.polyfit(np.asarray(sizes, dtype=float), np.asarray(values, dtype=float), 1)
    return float(intercept + slope * size), float(slope)


def _current_rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmRSS line; peak memory is measured on Linux only.")


def measure_process(data_path: str, datalist: Path, cache_dir: Path, image_size: int, batch_size: int) -> dict:
    """Build ``data_path``'s dataset on ``datalist``, read one epoch; return this process's memory figures."""
    rss_at_start = _current_rss_bytes()
    items = load_datalist(str(datalist), "training", compact=True)
    rss_with_datalist = _current_rss_bytes()
    loaders = vkd_train_config(image_size, load_class_names(str(datalist))).get_parsed_content(
        "preprocessing_loaders"
    )
    to_float = EnsureTyped(keys="image", dtype=torch.float32, track_meta=False)
    if data_path == "preprocessed_cache":
        transform = Compose([CachedPreprocessingd(loaders, cache_dir), to_float])
        dataset = PreprocessedCacheDataset(items, transform, num_workers=0, progress=False)
    elif data_path == "cache_dataset":
        dataset = CacheDataset(items, Compose([*loaders, to_float]), cache_rate=1.0, num_workers=1, progress=False)
    else:
        raise ValueError(f"data_path must be one of {DATA_PATHS}, got {data_path!r}.")
    rss_with_dataset = _current_rss_bytes()
    images = 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0):
        images += len(batch["image"])
    if images != len(items):
        raise RuntimeError(f"the epoch read {images} images of the {len(items)} in {datalist}.")
    return {
        "peak_rss_bytes": peak_rss_bytes(),
        "rss_at_start_bytes": rss_at_start,
        "rss_with_datalist_bytes": rss_with_datalist,
        "rss_with_dataset_bytes": rss_with_dataset,
    }


def _measure_in_fresh_process(
    data_path: str, datalist: Path, cache_dir: Path, settings: BenchmarkSettings, output: Path
) -> dict:
    command = [
        sys.executable, "-m", "benchmarks.memory_scaling",
        "--data-path", data_path,
        "--datalist", str(datalist),
        "--cache-dir", str(cache_dir),
        "--image-size", str(settings.scale_image_size),
        "--batch-size", str(settings.scale_batch_size),
        "--threads", str(torch.get_num_threads()),
        "--output", str(output),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"memory worker ({data_path}, {datalist}) failed:\n{completed.stderr[-4000:]}")
    return json.loads(output.read_text())


def build_cache(items: Sequence[dict], cache_dir: Path, class_names: Sequence[str], image_size: int, workers: int):
    """Fill ``cache_dir`` for ``items`` with the bundle's loaders at ``image_size``; returns the build report."""
    loaders = vkd_train_config(image_size, class_names).get_parsed_content("preprocessing_loaders")
    return build_preprocessed_cache(
        items, CachedPreprocessingd(loaders, cache_dir), num_workers=workers, progress=False
    )


def run(settings: BenchmarkSettings, work_dir: Path) -> GroupReport:
    """One fresh process per (data path, size); the cache's peak RSS ratios and both paths' 377k figures."""
    sizes, default_sizes = settings.scale_sizes, settings.default_path_sizes
    sources = phantom_sources(work_dir / "sources")
    items = write_repeated_items(sources, work_dir / "items", max(*sizes, *default_sizes))
    cache_dir = work_dir / "preprocessed_cache"
    build_start = time.perf_counter()
    build = build_cache(items[: max(sizes)], cache_dir, sources.class_names, settings.scale_image_size, workers=0)
    build_seconds = time.perf_counter() - build_start

    measured: dict[tuple[str, int], dict] = {}
    for data_path, path_sizes in (("preprocessed_cache", sizes), ("cache_dataset", default_sizes)):
        for size in path_sizes:
            datalist = write_vkd_datalist(items[:size], sources.class_names, work_dir / f"n{size}" / "datalist.json")
            output = work_dir / f"n{size}" / f"{data_path}.json"
            measured[data_path, size] = _measure_in_fresh_process(data_path, datalist, cache_dir, settings, output)

    def peak_mib(data_path: str, size: int) -> float:
        return measured[data_path, size]["peak_rss_bytes"] / _MIB

    figures = [
        Figure(f"peak_rss_mib_cache_{size}", f"peak RSS, preprocessed cache, {size:,} items", "MiB",
               Summary.of([peak_mib("preprocessed_cache", size)]))
        for size in sizes
    ]  # fmt: skip
    for size in sizes[1:]:
        figures.append(
            Figure(
                f"peak_rss_ratio_cache_{size}",
                f"peak RSS {size:,} ÷ {sizes[0]:,} items, preprocessed cache",
                "ratio",
                Summary.of([peak_mib("preprocessed_cache", size) / peak_mib("preprocessed_cache", sizes[0])]),
                Target("<=", 1.10),
            )
        )
    cache_at_mimic, cache_slope = extrapolate(
        sizes, [peak_mib("preprocessed_cache", s) for s in sizes], MIMIC_CXR_IMAGES
    )
    default_at_mimic, default_slope = extrapolate(
        default_sizes, [peak_mib("cache_dataset", s) for s in default_sizes], MIMIC_CXR_IMAGES
    )
    figures += [
        Figure(f"peak_rss_mib_cache_dataset_{size}", f"peak RSS, CacheDataset (cache_rate 1.0), {size:,} items",
               "MiB", Summary.of([peak_mib("cache_dataset", size)]))
        for size in default_sizes
    ]  # fmt: skip
    figures += [
        Figure(
            "peak_rss_gib_cache_377k_extrapolated",
            f"peak RSS at {MIMIC_CXR_IMAGES:,} items, preprocessed cache (linear fit, extrapolated)",
            "GiB",
            Summary.of([cache_at_mimic / 1024]),
        ),
        Figure(
            "peak_rss_gib_cache_dataset_377k_extrapolated",
            f"peak RSS at {MIMIC_CXR_IMAGES:,} items, CacheDataset cache_rate 1.0 (linear fit, extrapolated)",
            "GiB",
            Summary.of([default_at_mimic / 1024]),
        ),
    ]
    float32_item_kib = settings.scale_image_size**2 * 4 / 1024
    largest = measured["preprocessed_cache", max(sizes)]
    stages = (
        f"In the {max(sizes):,}-item cache process: {largest['rss_at_start_bytes'] / _MIB:.0f} MiB after imports, "
        f"{largest['rss_with_datalist_bytes'] / _MIB:.0f} MiB with the datalist loaded, "
        f"{largest['rss_with_dataset_bytes'] / _MIB:.0f} MiB with the dataset built, "
        f"{largest['peak_rss_bytes'] / _MIB:.0f} MiB at the peak."
    )
    return GroupReport(
        name="memory_scaling",
        title=f"Peak memory per process against dataset size at {settings.scale_image_size} px",
        setup={
            "sources": f"{sources.description}, repeated under distinct names",
            "preprocessed cache sizes": ", ".join(f"{size:,}" for size in sizes),
            "CacheDataset sizes": ", ".join(f"{size:,}" for size in default_sizes),
            "batch": settings.scale_batch_size,
            "num_workers": 0,
        },
        figures=figures,
        notes=[
            "Peak RSS is Linux VmHWM of a fresh process per size (imports, datalist and dataset included); "
            "the epoch reads every item once, without the random augmentation, whose buffers do not depend "
            "on the dataset size.",
            f"Growth per item from the linear fits: preprocessed cache {cache_slope * 1024:.2f} KiB, "
            f"CacheDataset {default_slope * 1024:.0f} KiB (a float32 item at this size is "
            f"{float32_item_kib:.0f} KiB). " + stages + " The 377k CacheDataset figure is one process; the shipped "
            "num_workers=4 loader workers touch the cached items' pages and can duplicate them.",
            f"The store keys records by source content, so the {max(sizes):,} items share "
            f"{build.entries} records (the sources repeat); records are read with file reads, not memory "
            "maps, so their number does not enter the RSS. The per-item cost is the datalist and the "
            f"source-fingerprint memo. Preparing the cache for {max(sizes):,} items (hashing every name, "
            f"building the distinct records, one process) took {build_seconds:.0f} s.",
        ],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-path", choices=DATA_PATHS, required=True)
    parser.add_argument("--datalist", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, required=True)
    arguments = parser.parse_args(argv)
    torch.set_num_threads(arguments.threads)
    logging.disable(logging.INFO)
    result = measure_process(
        arguments.data_path, arguments.datalist, arguments.cache_dir, arguments.image_size, arguments.batch_size
    )
    arguments.output.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
