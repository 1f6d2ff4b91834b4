"""Filling the preprocessed cache of :class:`~cxrkd_monai.data.cached_preprocessing.CachedPreprocessingd` ahead
of a run, for every item of a datalist or for the datasets of a bundle's configs (``cxrkd cache``).

The build runs in parallel processes and is resumable: each finished shard is committed atomically, so a killed
build loses at most the shards in flight.
:class:`~cxrkd_monai.data.preprocessed_cache_dataset.PreprocessedCacheDataset` runs it when it is built; under
DDP the ranks share it (each rank builds its share, then all meet at a barrier).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.utils import ensure_tuple
from tqdm import tqdm

from cxrkd_monai.data.cached_preprocessing import CachedPreprocessingd, find_cached_step
from cxrkd_monai.data.dataset import datalist_index
from cxrkd_monai.data.preprocessed_store import DIGEST_SIZE, file_content_digest, file_fingerprint
from cxrkd_monai.transforms.failures import failure_reason

__all__ = ["CacheBuildReport", "build_bundle_cache", "build_preprocessed_cache"]

logger = logging.getLogger(__name__)

SHARD_SIZE = 256
"""Most records a build worker commits at once; a killed build redoes at most one shard per worker."""
BUILD_CHUNK_ITEMS = 8192
"""Items hashed, looked up and built together: the build's own memory is bounded by a chunk, not the datalist."""


@dataclass
class CacheBuildReport:
    """What :func:`build_preprocessed_cache` did for one datalist.

    Attributes:
        items: datalist items looked at (this rank's share under DDP).
        entries: distinct entries those items need.
        built: entries computed and stored by this call.
        reused: entries already present.
        hashed: source files whose content was hashed (not found in the fingerprint memo).
        rebuilt_corrupt: entries present but failing their checksum or not data records, rebuilt (``verify=True``
            only).
        failed: ``(position in data, reason)`` of items that could not be preprocessed (messages give the
            datalist index, :func:`~cxrkd_monai.data.dataset.datalist_index`); they are left to the loader, which
            raises the same error naming the item when it is used.
    """

    items: int = 0
    entries: int = 0
    built: int = 0
    reused: int = 0
    hashed: int = 0
    rebuilt_corrupt: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)


def build_preprocessed_cache(
    data: Sequence[Mapping[Hashable, Any]],
    transform: Callable | Sequence[Callable],
    num_workers: int = 0,
    progress: bool = True,
    verify: bool = False,
    rehash: bool = False,
    distributed: bool = True,
) -> CacheBuildReport:
    """Fill the cache of the :class:`CachedPreprocessingd` step in ``transform`` for every item of ``data``.

    The transforms before the cached step run first (they must be deterministic, e.g. item validation). Under
    ``torch.distributed`` (and ``distributed``) rank ``r`` of ``R`` builds items ``r, r + R, ...`` and all ranks
    then wait at a barrier, so each entry is built once and every rank reads the same cache.

    Args:
        data: datalist items (``image``: a path).
        transform: the per-item chain holding one :class:`CachedPreprocessingd`, or that step alone.
        num_workers: build processes (the platform's default start method, as for DataLoader workers); 0 or 1
            builds in this process.
        progress: show tqdm progress bars (hashing, building).
        verify: read every present entry and rebuild those failing their checksum.
        rehash: hash every source file again instead of trusting the ``(path, size, mtime_ns)`` memo.
        distributed: split the work across the ranks of an initialised process group.

    Returns:
        a :class:`CacheBuildReport`; failed items are also logged (count and the first reasons).
    """
    found = find_cached_step(transform)
    if found is None:
        raise ValueError("build_preprocessed_cache: the transform chain holds no CachedPreprocessingd.")
    before, cached = found
    rank, world = _rank_and_world() if distributed else (0, 1)
    indices = range(rank, len(data), world)
    report = CacheBuildReport(items=len(indices))
    store = cached.store
    store.refresh()
    removed = store.remove_orphans()
    if removed:
        logger.info("Preprocessed cache: removed %d file(s) left by interrupted builds.", removed)
    other_formats = store.other_format_folders()
    if other_formats and rank == 0:
        logger.info(
            "Preprocessed cache: %d folder(s) of another record format in %s are not read (%s); their entries are "
            "built again in the current format. Delete them to reclaim the space.",
            len(other_formats), store.root, ", ".join(path.name for path in other_formats[:3]),
        )  # fmt: skip

    chunks = [indices[start : start + BUILD_CHUNK_ITEMS] for start in range(0, len(indices), BUILD_CHUNK_ITEMS)]
    entry_keys, to_build = [], 0
    with _WorkerPool(num_workers) as pool:
        for number, chunk in enumerate(chunks, start=1):
            stage = f" ({number}/{len(chunks)})" if len(chunks) > 1 else ""
            keys, work = _build_chunk(data, chunk, before, cached, pool, progress and rank == 0, stage, verify, rehash,
                                      report)  # fmt: skip
            entry_keys.append(keys)
            to_build += work
    report.entries = len(np.unique(np.concatenate(entry_keys))) if entry_keys else 0
    report.reused = max(0, report.entries - to_build)
    if report.failed:
        first = "; ".join(f"item {datalist_index(data, index)}: {reason}" for index, reason in report.failed[:3])
        logger.warning(
            "Preprocessed cache: %d item(s) could not be preprocessed and are left to the loader (%s).",
            len(report.failed), first,
        )  # fmt: skip
    if world > 1:
        torch.distributed.barrier()
    store.refresh()
    return report


def _build_chunk(
    data: Sequence[Mapping[Hashable, Any]],
    indices: Sequence[int],
    before: Sequence[Callable],
    cached: CachedPreprocessingd,
    pool: _WorkerPool,
    progress: bool,
    stage: str,
    verify: bool,
    rehash: bool,
    report: CacheBuildReport,
) -> tuple[np.ndarray, int]:
    """Hash, look up and build the entries of the items at ``indices``, adding to ``report``; returns their distinct
    entry keys and how many of them were missing or corrupt (the work given to the build).

    The whole datalist is built in chunks of :data:`BUILD_CHUNK_ITEMS` items, so the build's own memory (each
    item's inputs and digests) does not grow with the datalist. An entry built by an earlier chunk is found in the
    store, which is refreshed after each chunk.
    """
    prepared: dict[int, dict] = {}
    for index in indices:
        try:
            item = dict(data[index])
            for step in before:
                item = step(item)
            cached.source_paths(item)
            prepared[index] = cached.inputs(item)
        except Exception as error:  # reported, and raised again by the loader when the item is used
            report.failed.append((index, failure_reason(error)))
    content = _content_digests(prepared, cached, pool, progress, rehash, report, stage)
    keys: dict[bytes, int] = {}
    for index, item in prepared.items():
        if index in content:
            keys.setdefault(cached.entry_key(item, content[index]), index)
    store = cached.store
    missing = store.missing(list(keys))
    to_build = [(index, key, prepared[index]) for (key, index), absent in zip(keys.items(), missing) if absent]
    if verify:
        corrupt = [(index, key, prepared[index]) for (key, index), absent in zip(keys.items(), missing)
                   if not absent and cached.read_entry(key, {}) is None]  # fmt: skip
        report.rebuilt_corrupt += len(corrupt)
        to_build += corrupt
    built, failures = _build(to_build, cached, pool, progress, stage)
    report.built += built
    report.failed += failures
    if built:
        store.refresh()
    return np.array(list(keys), dtype=f"V{DIGEST_SIZE}"), len(to_build)


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _content_digests(
    prepared: Mapping[int, dict],
    cached: CachedPreprocessingd,
    pool: _WorkerPool,
    progress: bool,
    rehash: bool,
    report: CacheBuildReport,
    stage: str = "",
) -> dict[int, list[bytes]]:
    """Content digests of each item's sources: memoised ones looked up, the others hashed (in parallel) and
    added to the memo. An item whose source cannot be read is reported failed and left to the loader."""
    store = cached.store
    fingerprints: dict[str, bytes | None] = {}
    for item in prepared.values():
        for path in cached.source_paths(item):
            if path not in fingerprints:
                try:
                    fingerprints[path] = file_fingerprint(path)
                except OSError:
                    fingerprints[path] = None
    digests: dict[str, bytes] = {}
    to_hash = []
    for path, fingerprint in fingerprints.items():
        known = None if rehash or fingerprint is None else store.memo_lookup(fingerprint)
        if known is not None:
            digests[path] = known
        elif fingerprint is not None:
            to_hash.append(path)
    hashed = pool.map(_hash_file, to_hash, progress, f"Hashing sources{stage}")
    for path, value in zip(to_hash, hashed):
        if value is not None:
            digests[path] = value
    report.hashed += sum(value is not None for value in hashed)
    store.remember([(fingerprints[path], digests[path]) for path in to_hash if path in digests])
    result = {}
    for index, item in prepared.items():
        paths = cached.source_paths(item)
        unreadable = [path for path in paths if path not in digests]
        if unreadable:
            report.failed.append((index, f"source file {unreadable[0]!r} does not exist or cannot be read"))
        else:
            result[index] = [digests[path] for path in paths]
    return result


def _hash_file(path: str) -> bytes | None:
    try:
        return file_content_digest(path)
    except OSError:
        return None


class _WorkerPool:
    """Build processes, started on first use: the platform's default start method (fork on Linux, as for
    PyTorch's DataLoader workers), one thread each. With ``num_workers`` 0 or 1 everything runs here."""

    def __init__(self, num_workers: int) -> None:
        self.num_workers = num_workers
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> _WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._executor is not None:
            self._executor.shutdown()

    def _processes(self, tasks: int) -> ProcessPoolExecutor | None:
        if self.num_workers <= 1 or tasks <= 1:
            return None
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.num_workers, initializer=torch.set_num_threads, initargs=(1,))
        return self._executor

    def map(self, function: Callable, values: Sequence, progress: bool, desc: str) -> list:
        """``[function(v) for v in values]`` with a progress bar."""
        executor = self._processes(len(values))
        bar = tqdm(total=len(values), desc=desc, disable=not progress or not values)
        with bar:
            if executor is None:
                results = []
                for value in values:
                    results.append(function(value))
                    bar.update(1)
                return results
            chunksize = max(1, len(values) // (8 * self.num_workers))
            results = []
            for result in executor.map(function, values, chunksize=chunksize):
                results.append(result)
                bar.update(1)
            return results

    def run_shards(self, function: Callable, shards: Sequence[Sequence], progress: bool, desc: str) -> list:
        """``function(shard)`` for each shard, in completion order; each returns ``(..., items done)``."""
        executor = self._processes(len(shards))
        results = []
        with tqdm(total=sum(len(shard) for shard in shards), desc=desc, unit="image", disable=not progress) as bar:
            if executor is None:
                for shard in shards:
                    results.append(function(shard))
                    bar.update(results[-1][-1])
            else:
                for future in as_completed([executor.submit(function, shard) for shard in shards]):
                    results.append(future.result())
                    bar.update(results[-1][-1])
        return results


def _build(
    work: Sequence[tuple[int, bytes, dict]],
    cached: CachedPreprocessingd,
    pool: _WorkerPool,
    progress: bool,
    stage: str = "",
) -> tuple[int, list[tuple[int, str]]]:
    """Compute and store ``work`` (datalist index, entry key, chain inputs) in shards of at most
    :data:`SHARD_SIZE`, spread over the pool's processes."""
    if not work:
        return 0, []
    shard_size = max(1, min(SHARD_SIZE, math.ceil(len(work) / max(1, pool.num_workers))))
    shards = [list(work[start : start + shard_size]) for start in range(0, len(work), shard_size)]
    results = pool.run_shards(partial(_build_shard, cached), shards, progress, f"Preprocessed cache{stage}")
    return sum(count for count, _, _ in results), [failure for _, failures, _ in results for failure in failures]


def _build_shard(cached: CachedPreprocessingd, shard: Sequence[tuple[int, bytes, dict]]) -> tuple[int, list, int]:
    """Compute one shard's records and commit them; returns (records written, failures, items processed)."""
    records, failures = [], []
    for index, key, item in shard:
        try:
            records.append((key, cached.compute(item)))
        except Exception as error:
            failures.append((index, failure_reason(error)))
    return cached.store.write_shard(records), failures, len(shard)


def build_bundle_cache(
    bundle_dir: str | os.PathLike,
    config_file: str | Sequence[str] = "configs/train.json",
    datasets: Sequence[str] = ("train#dataset", "validate#dataset"),
    num_workers: int = 4,
    verify: bool = False,
    rehash: bool = False,
    **overrides: Any,
) -> dict[str, CacheBuildReport]:
    """Pre-build the preprocessed cache of a bundle's datasets, as its training run would use it.

    Each dataset definition (``<id>#data`` and ``<id>#transform``) is read from the bundle's configs with
    ``overrides`` applied (e.g. ``dataset_dir``, ``image_size``, ``cache_dir``), so the entries are exactly those
    the run reads. With ``configs/evaluate.json`` added to ``config_file``, ``validate#dataset`` is the test split.

    Args:
        bundle_dir: the bundle folder (``bundle_root``).
        config_file: config file(s), relative to ``bundle_dir`` or absolute, merged in order.
        datasets: config ids of the datasets to build.
        num_workers: build processes.
        verify: also read every present entry and rebuild the corrupt ones.
        rehash: hash every source file again.
        overrides: config values, as on the ``monai.bundle run`` command line.

    Returns:
        ``{dataset id: CacheBuildReport}``.
    """
    from monai.bundle import ConfigParser

    bundle_dir = Path(bundle_dir)
    parser = ConfigParser()
    parser.read_config([str(bundle_dir / name) for name in ensure_tuple(config_file)])
    parser.update({"bundle_root": str(bundle_dir), **overrides})
    reports = {}
    for dataset in datasets:
        data = parser.get_parsed_content(f"{dataset}#data")
        transform = parser.get_parsed_content(f"{dataset}#transform")
        if find_cached_step(transform) is None:
            raise ValueError(f"'{dataset}' of {bundle_dir} has no CachedPreprocessingd step (is cache_dir null?).")
        reports[dataset] = build_preprocessed_cache(data, transform, num_workers, True, verify, rehash)
        report = reports[dataset]
        logger.info(
            "%s: %d items, %d entries: %d built, %d present, %d hashed, %d corrupt rebuilt, %d failed.",
            dataset, report.items, report.entries, report.built, report.reused, report.hashed,
            report.rebuilt_corrupt, len(report.failed),
        )  # fmt: skip
    return reports
