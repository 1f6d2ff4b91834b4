"""Training images/s per core from the preprocessed cache, against MONAI's data paths and the raw step.

Every candidate runs in this process with one torch thread and ``num_workers=0``, so images/s is per
core. A loader's unit of work is one shuffled epoch over ``loader_items`` items through a ``DataLoader``
of ``loader_batch_size`` items a batch. Every loader starts from the bundle's decoding and letterbox
(``preprocessing_loaders``) and ends in its augmentation (``train#augmentation``: ``RandAffined``,
``RandScaleIntensityd``, ``EnsureTyped``), both parsed from its ``train.json``; the item checks before
them, a few microseconds, are left out of all four:

- ``preprocessed_cache``: :class:`~cxrkd_monai.data.PreprocessedCacheDataset`, built beforehand; each
  item is read from the on-disk store and augmented;
- ``decode_each_epoch``: MONAI ``Dataset``, every item decoded from its source file and letterboxed every
  epoch (``cache_rate`` 0);
- ``cache_dataset``: MONAI ``CacheDataset`` with ``cache_rate`` 1.0, float32 items in RAM (the bundles'
  earlier default);
- ``persistent_dataset``: MONAI ``PersistentDataset``, the decoded float32 item saved with ``torch.save``
  per item and loaded from disk every epoch.

The raw step is MONAI's ``DenseNet121`` (1 channel in, 14 classes out), forward, binary cross-entropy,
backward and Adam step on a batch already in memory, same batch and image size: the images/s a training
loop could reach on this core if loading cost nothing. Each round runs one epoch of every loader and one
raw step, in a rotating order (:func:`~benchmarks.timing.interleaved_times`).

The sources are real chest radiographs (512 px PNGs and full-size DICOM) repeated under distinct names,
so decoding is as costly as on an archive (small phantoms in quick mode). The cache keys its records by
source content, so it builds one record per distinct source: its build rate per core (one process) is
over those, and its size on disk is per record.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from monai.data import CacheDataset, DataLoader, Dataset, PersistentDataset
from monai.networks.nets import DenseNet121
from monai.transforms import Compose

from benchmarks.report import Figure, GroupReport, Target
from benchmarks.scale_items import phantom_sources, real_or_phantom_sources, write_repeated_items
from benchmarks.settings import BenchmarkSettings
from benchmarks.timing import Summary, interleaved_times, per_repeat_ratios
from benchmarks.vkd_transforms import vkd_train_config
from cxrkd_monai.data import CachedPreprocessingd, PreprocessedCacheDataset, build_preprocessed_cache

__all__ = ["raw_densenet_step", "run"]

LOADERS = {
    "preprocessed_cache": "preprocessed cache (shipped path)",
    "decode_each_epoch": "decoding the source every epoch (Dataset)",
    "cache_dataset": "CacheDataset in RAM (cache_rate 1.0)",
    "persistent_dataset": "PersistentDataset",
}
"""Candidate data paths: key -> how the report names them."""


def raw_densenet_step(batch_size: int, image_size: int, num_classes: int):
    """A closure running one raw DenseNet-121 training step on a ``(batch_size, 1, S, S)`` batch in memory."""
    network = DenseNet121(spatial_dims=2, in_channels=1, out_channels=num_classes)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-5)
    loss_function = torch.nn.BCEWithLogitsLoss()
    images = torch.rand(batch_size, 1, image_size, image_size)
    labels = (torch.rand(batch_size, num_classes) > 0.5).float()

    def step() -> None:
        network.train()
        optimizer.zero_grad()
        loss_function(network(images), labels).backward()
        optimizer.step()

    return step


def _epoch(dataset, batch_size: int):
    """A closure iterating one shuffled epoch of ``dataset`` (batches are consumed, not kept)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)

    def epoch() -> None:
        for batch in loader:
            batch["image"].sum()  # the batch exists as a tensor; nothing else is done with it

    return epoch


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def run(settings: BenchmarkSettings, work_dir: Path) -> GroupReport:
    """Interleave one epoch of each loader and one raw training step, ``repeats`` rounds after ``warmup``."""
    size, batch_size, count = settings.loader_image_size, settings.loader_batch_size, settings.loader_items
    # Quick mode (CI) decodes small phantoms: the full-size DICOM alone costs about 0.4 s an image.
    if settings.mode == "full":
        sources = real_or_phantom_sources(work_dir / "sources")
    else:
        sources = phantom_sources(work_dir / "sources")
    items = write_repeated_items(sources, work_dir / "items", count)
    parser = vkd_train_config(size, sources.class_names)
    loaders = parser.get_parsed_content("preprocessing_loaders")
    augmentation = parser.get_parsed_content("train#augmentation")
    decode_and_augment = Compose([*loaders, *augmentation])

    cache_dir = work_dir / "preprocessed_cache"
    cached_loaders = CachedPreprocessingd(loaders, cache_dir)
    build_start = time.perf_counter()
    build = build_preprocessed_cache(items, cached_loaders, num_workers=0, progress=False)
    build_seconds = time.perf_counter() - build_start
    datasets = {
        "preprocessed_cache": PreprocessedCacheDataset(
            items, Compose([cached_loaders, *augmentation]), num_workers=0, progress=False
        ),
        "decode_each_epoch": Dataset(items, decode_and_augment),
        "cache_dataset": CacheDataset(items, decode_and_augment, cache_rate=1.0, num_workers=1, progress=False),
        "persistent_dataset": PersistentDataset(items, decode_and_augment, cache_dir=work_dir / "persistent"),
    }
    candidates = {name: _epoch(dataset, batch_size) for name, dataset in datasets.items()}
    candidates["raw_step"] = raw_densenet_step(batch_size, size, len(sources.class_names))
    times = interleaved_times(candidates, settings.repeats, settings.warmup)
    rates = {name: [count / seconds for seconds in values] for name, values in times.items()}
    rates["raw_step"] = [batch_size / seconds for seconds in times["raw_step"]]

    figures = [
        Figure(
            f"loader_images_per_second_{name}",
            f"images/s per core, {title}",
            "images/s",
            Summary.of(rates[name]),
        )
        for name, title in LOADERS.items()
    ]
    figures.append(
        Figure(
            "raw_densenet121_step_images_per_second",
            "images/s per core, raw DenseNet-121 training step",
            "images/s",
            Summary.of(rates["raw_step"]),
        )
    )
    cache_rates = rates["preprocessed_cache"]
    figures.append(
        Figure(
            "loader_to_raw_step_ratio",
            "preprocessed-cache loader images/s ÷ raw DenseNet-121 step images/s",
            "ratio",
            Summary.of(per_repeat_ratios(cache_rates, rates["raw_step"])),
            Target(">=", 5.0),
        )
    )
    for name in ("decode_each_epoch", "cache_dataset", "persistent_dataset"):
        figures.append(
            Figure(
                f"loader_cache_over_{name}",
                f"preprocessed-cache loader images/s ÷ {LOADERS[name]}",
                "ratio",
                Summary.of(per_repeat_ratios(cache_rates, rates[name])),
            )
        )
    cache_bytes = _folder_bytes(cache_dir)
    persistent_bytes = _folder_bytes(work_dir / "persistent")
    figures += [
        Figure(
            "cache_build_images_per_second_per_core",
            "preprocessed-cache build images/s per core (one process, distinct sources)",
            "images/s",
            Summary.of([build.built / build_seconds]),
        ),
        Figure(
            "cache_kib_per_image",
            "preprocessed cache on disk per image",
            "KiB",
            Summary.of([cache_bytes / build.entries / 1024]),
        ),
        Figure(
            "persistent_dataset_kib_per_image",
            "PersistentDataset on disk per image",
            "KiB",
            Summary.of([persistent_bytes / count / 1024]),
        ),
    ]
    median_cache = Summary.of(cache_rates).median
    median_raw = Summary.of(rates["raw_step"]).median
    return GroupReport(
        name="loader_throughput",
        title=f"Loader images/s per core at {size} px: preprocessed cache against MONAI's data paths and the raw step",
        setup={
            "sources": sources.description,
            "items per epoch": count,
            "image size": f"{size} px",
            "batch": batch_size,
            "torch threads": torch.get_num_threads(),
            "num_workers": 0,
        },
        figures=figures,
        notes=[
            "One process, one thread: each images/s is what one core delivers. The loaders' figures include "
            "collation; the raw step has no data loading at all.",
            f"A 16-core machine feeding one GPU from the cache, with 15 loader processes at this machine's "
            f"per-core rate, would deliver about {15 * median_cache:.0f} images/s at {size} px. That bounds "
            f"the GPU step rate the CPUs can keep fed; it is not a GPU measurement. The CPU training step here "
            f"({median_raw:.2g} images/s per core) is far slower than any GPU step, so the ratio above says "
            "the loader is not this machine's bottleneck, not that it keeps a GPU busy.",
        ],
    )
