"""A persistent cache of the deterministic preprocessing (decode + letterbox), the bundles' default data path.

A chest radiograph decodes at tens per second per core (a 3000 x 2500 DICOM or JPEG), far below what one GPU
consumes, and holding a whole archive in RAM as float32 (``CacheDataset``) needs about 200 KB an image at 224 px:
75 GB for MIMIC-CXR. Here each source image goes through the bundle's own loaders (``LoadCXRd``,
``EncodeFractureAnnotationsd``, ``Letterboxd``) once, and the result is stored on disk
(:class:`~cxrkd_monai.data.preprocessed_store.PreprocessedStore`); every epoch reads it back and runs only the
random augmentation. In a bundle config the cached step replaces the loaders in the chain::

    "cached_loaders": {"_target_": "cxrkd_monai.data.CachedPreprocessingd",
                       "transforms": "@preprocessing_loaders", "cache_dir": "@cache_dir"},
    "train#preprocessing#transforms": "$[...validation...] + [@cached_loaders] + @train#augmentation",
    "train#dataset": {"_target_": "cxrkd_monai.data.PreprocessedCacheDataset", "data": ...,
                      "transform": "@train#preprocessing", "cache_rate": 0.0, "num_workers": 4}

Keys. An entry's key is a digest of (a) the settings: a pickle of the wrapped transforms (so ``image_size``,
loader options, class names, ...) and the record format version; (b) the content of each source file; (c) the
item's ``item_keys`` values (e.g. a fracture item's boxes, points, labels and subset, which the wrapped chain
reads). The wrapped chain is given only the source keys and ``item_keys``, so nothing else can influence a
record unseen. A source's content digest is memoised by ``(absolute path, size, mtime_ns)``: a start-up costs
one ``stat`` per file, a rewritten file (new size or mtime) is hashed again and rebuilt only when its bytes
changed, and a data set that is moved or copied keeps its entries (the content, not the path, is the key; the
decoded image's ``filename_or_obj`` is set to the requesting item's path). The one change this misses is an
in-place rewrite that keeps both size and mtime to the nanosecond; ``build_preprocessed_cache(rehash=True)``
(``cxrkd cache --rehash True``) hashes every file again.

Stored form of an image (``keys``). The in-memory path delivers float32 in ``[0, 1]``; after the area resize of
``Letterboxd`` the values are means of ``k / 255`` (8-bit sources) or ``k / 65535`` and lie on no integer grid.
An image is stored as the smallest of ``uint8`` (``round(255 v)``), ``uint16`` (``round(65535 v)``) and float32
that the ``image_storage`` rule allows:

- ``"exact"`` (the bundles' default): ``uint8`` or ``uint16`` only when reading back ``q / levels`` in float32
  reproduces every value bit for bit (a source that ``Letterboxd`` only pads, e.g. an archive already stored at
  the training size), float32 otherwise. Training on the cache is then bitwise the in-memory training.
- ``"uint16"``: ``uint8`` when exact, else ``uint16`` within ``0.5 / 65535`` (7.6e-6, 1/256 of an 8-bit step),
  half the bytes of float32 (100 KB at 224 px). Why this is not the default, measured on the VKD bundle: a
  one-ulp change of every input pixel already moves its training losses by 6.5e-6 (relative) at the second
  step and 2e-3 at the fourth, because Adam divides each update by the root of its squared gradients and so
  magnifies tiny gradient differences; the uint16 rounding moves them by 6e-4 at the second step, a hundred
  times the float32 effect, so the cache would no longer train *as* the in-memory path, only like it
  (``docs/data_cache.md`` gives the effect on whole runs). ``uint8`` would be off by up to ``1 / 510``.

Either way a value outside ``[0, 1]`` (a chain that normalises differently) keeps the image float32. Everything
else the chain returns (``geometry``, encoded boxes and points, labels, the image's meta and traced operations)
is stored exactly.

Records hold data only (:mod:`cxrkd_monai.data.data_record`: a JSON header and raw array bytes), never a pickle:
reading a record cannot run code. A record that is not in this format (a pickle planted in a shared cache
folder, say) is refused with a warning naming its shard file, never decoded, and rebuilt; caches of older record
formats (pickles, in ``v1-*`` folders) are not read at all. ``docs/data_cache.md`` gives the trust model.

The cache is filled by :func:`build_preprocessed_cache` (parallel processes, resumable: each finished shard is
committed atomically, so a killed build loses at most the shards in flight) which
:class:`PreprocessedCacheDataset` runs when it is built, shared by DDP ranks (each rank builds its share, then
all meet at a barrier). An entry that is missing or fails its checksum when read is rebuilt on the spot.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Compose, MapTransform, Randomizable
from monai.utils import TraceKeys, ensure_tuple
from tqdm import tqdm

from cxrkd_monai.data.data_record import RecordFormatError, decode_data, encode_data
from cxrkd_monai.data.dataset import ItemNamingCacheDataset, datalist_index
from cxrkd_monai.data.preprocessed_store import (
    DIGEST_SIZE,
    FORMAT_VERSION,
    PreprocessedStore,
    digest,
    file_content_digest,
    file_fingerprint,
)
from cxrkd_monai.transforms.failures import failure_reason

__all__ = [
    "CacheBuildReport",
    "CachedPreprocessingd",
    "PreprocessedCacheDataset",
    "build_bundle_cache",
    "build_preprocessed_cache",
    "find_cached_step",
]

logger = logging.getLogger(__name__)

SHARD_SIZE = 256
"""Most records a build worker commits at once; a killed build redoes at most one shard per worker."""
BUILD_CHUNK_ITEMS = 8192
"""Items hashed, looked up and built together: the build's own memory is bounded by a chunk, not the datalist."""

UINT8_LEVELS, UINT16_LEVELS = 255, 65535
IMAGE_STORAGE = ("exact", "uint16")


class CachedPreprocessingd(MapTransform):
    """Run a deterministic chain of transforms once per source file and keep its output on disk.

    ``CachedPreprocessingd(transforms)(item)`` equals ``Compose(transforms)(item)`` (the image within the
    storage rule of the module docstring; everything else exactly), and from the second call on a source file
    it reads the stored output instead of running ``transforms``.

    Args:
        transforms: the deterministic chain, e.g. ``[LoadCXRd("image"), Letterboxd("image", (224, 224))]``.
            It must not hold random transforms.
        cache_dir: the cache folder (shared by settings, bundles and processes).
        keys: the item keys holding source file paths; their loaded images are the stored arrays.
        item_keys: the other item keys the chain reads (e.g. ``boxes``, ``points``, ``image_label``,
            ``subset`` for ``EncodeFractureAnnotationsd``). Their values are part of the entry's key, and they
            are the only other keys the chain is given.
        image_storage: ``"exact"`` or ``"uint16"``, the storage rule of the module docstring.
        write_missing: store what is computed for a missing or corrupt entry (False for a read-only cache).

    Input: an item whose ``keys`` are paths. Output: the item updated with the chain's output, e.g. ``image``
    ``(1, W, H)`` float32 MetaTensor and ``geometry`` ``(4, 2)`` int64 for the letterbox chain.

    Example::

        cached = CachedPreprocessingd([LoadCXRd("image"), Letterboxd("image", (224, 224))], "cache")
        item = cached({"image": "p0001.dcm", "label": [0, 1]})   # decodes and stores; later calls read
    """

    def __init__(
        self,
        transforms: Sequence[Callable] | Callable,
        cache_dir: str | os.PathLike,
        keys: KeysCollection = "image",
        item_keys: KeysCollection = (),
        image_storage: str = "exact",
        write_missing: bool = True,
    ) -> None:
        super().__init__(keys)
        if image_storage not in IMAGE_STORAGE:
            raise ValueError(f"CachedPreprocessingd: image_storage must be in {IMAGE_STORAGE}, got {image_storage!r}.")
        self.image_storage = image_storage
        self.transforms = list(transforms.transforms if isinstance(transforms, Compose) else ensure_tuple(transforms))
        for transform in self.transforms:
            if isinstance(transform, Randomizable):
                raise ValueError(
                    f"CachedPreprocessingd: {type(transform).__name__} is random; only deterministic transforms "
                    "can be cached (put the random ones after the cached step)."
                )
        self.chain = Compose(self.transforms)
        self.item_keys = tuple(ensure_tuple(item_keys))
        self.write_missing = write_missing
        self.cache_dir = Path(cache_dir)
        settings = digest(
            f"format {FORMAT_VERSION}".encode(),
            pickle.dumps((self.transforms, tuple(self.keys), self.item_keys, image_storage), protocol=4),
        )
        self.store = PreprocessedStore(self.cache_dir, settings)
        self.rebuilt_count = 0

    def source_paths(self, data: Mapping[Hashable, Any]) -> list[str]:
        """The source file path under each of ``keys``, as given."""
        paths = []
        for key in self.key_iterator(data):
            value = data[key]
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"CachedPreprocessingd: '{key}' must be a file path, got {type(value).__name__}.")
            paths.append(os.fspath(value))
        return paths

    def entry_key(self, data: Mapping[Hashable, Any], content_digests: Sequence[bytes] | None = None) -> bytes:
        """The entry key of ``data`` (see the module docstring). ``content_digests`` of the source files may be
        given; otherwise they come from the memo or are hashed. Raises ``OSError`` for an unreadable source."""
        if content_digests is None:
            content_digests = [self.store.content_digest(path) for path in self.source_paths(data)]
        fields = {str(key): data.get(key) for key in self.item_keys if key in data}
        encoded_fields = json.dumps(fields, sort_keys=True, default=_plain).encode()
        return digest(self.store.settings_digest, *content_digests, encoded_fields)

    def inputs(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """What the chain is given: the source keys and ``item_keys`` of ``data``."""
        return {key: data[key] for key in (*self.keys, *self.item_keys) if key in data}

    def compute(self, data: Mapping[Hashable, Any]) -> bytes:
        """Run the chain on ``data``'s inputs and encode the result as a record."""
        return encode_record(self.chain(self.inputs(data)), self.keys, exact=self.image_storage == "exact")

    def read_entry(self, key: bytes, sources: Mapping[Hashable, str]) -> dict[Hashable, Any] | None:
        """The decoded record stored under ``key`` (see :func:`decode_record` for ``sources``), or None when it
        is missing, fails its checksum, or is not a data record (then the store logs it, naming the shard file,
        and counts it as corrupt: the caller rebuilds it)."""
        payload = self.store.read(key)
        if payload is None:
            return None
        try:
            return decode_record(payload, sources)
        except RecordFormatError as error:
            return self.store.reject(key, f"is not a data record: {error}")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        sources = self.source_paths(d)
        try:
            key = self.entry_key(d)
        except OSError:  # an unreadable or missing source: the chain raises the loader's own error
            key = None
        named_sources = dict(zip(self.keys, sources))
        stored = self.read_entry(key, named_sources) if key is not None else None
        if stored is None:
            payload = self.compute(d)
            if key is not None and self.write_missing:
                self.store.write_shard([(key, payload)])
                self.rebuilt_count += 1
                logger.info(
                    "Preprocessed cache: built the entry of %s on read (%d in this process).",
                    sources, self.rebuilt_count,
                )  # fmt: skip
            stored = decode_record(payload, named_sources)
        d.update(stored)
        return d


def find_cached_step(
    transform: Callable | Sequence[Callable],
) -> tuple[list[Callable], CachedPreprocessingd] | None:
    """The transforms before the :class:`CachedPreprocessingd` in ``transform`` (a ``Compose``, nested or
    not, or a list), and that step; None when there is none. Raises ``ValueError`` when there are several, or
    when a transform before it is random (the cache would freeze its draws)."""
    flat: list[Callable] = []

    def visit(node: Any) -> None:
        if isinstance(node, Compose):
            for child in node.transforms:
                visit(child)
        elif isinstance(node, (list, tuple)):
            for child in node:
                visit(child)
        else:
            flat.append(node)

    visit(transform)
    positions = [i for i, step in enumerate(flat) if isinstance(step, CachedPreprocessingd)]
    if not positions:
        return None
    if len(positions) > 1:
        raise ValueError(f"The transform chain must hold one CachedPreprocessingd, found {len(positions)}.")
    before = flat[: positions[0]]
    random = [type(step).__name__ for step in before if isinstance(step, Randomizable)]
    if random:
        raise ValueError(f"Random transforms {random} come before CachedPreprocessingd; move them after it.")
    return before, flat[positions[0]]


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


class PreprocessedCacheDataset(ItemNamingCacheDataset):
    """The bundles' dataset: the disk cache of :class:`CachedPreprocessingd` filled at construction, then an
    :class:`~cxrkd_monai.data.dataset.ItemNamingCacheDataset` (MONAI's ``CacheDataset``) over it.

    With ``cache_rate=0`` (the default) each item is read from the disk cache at every access and only the
    transforms after the cached step (the random augmentation) run: memory does not grow with the data set.
    ``cache_rate > 0`` also keeps that fraction of the items' deterministic output in RAM, as before, which
    suits small sets. A chain without a :class:`CachedPreprocessingd` (a bundle run with ``cache_dir`` null)
    makes this the in-memory path: exactly an ``ItemNamingCacheDataset``.

    Args:
        data: datalist items.
        transform: the per-item chain, holding at most one :class:`CachedPreprocessingd`.
        cache_rate: fraction of items also cached in RAM (``CacheDataset``).
        num_workers: threads for the RAM cache and, unless ``build_workers`` is given, build processes.
        build_workers: processes that fill the disk cache (0 or 1: in this process).
        progress: show the build's progress bars (rank 0 only).
        kwargs: passed to :class:`~monai.data.CacheDataset`.

    Attributes:
        build_report: the :class:`CacheBuildReport` of the construction (None without a cached step).

    Example::

        dataset = PreprocessedCacheDataset(items, Compose([cached, RandFlipd("image", prob=0.5)]))
        dataset[0]["image"].shape   # (1, 224, 224)
    """

    def __init__(
        self,
        data: Sequence[Mapping[Hashable, Any]],
        transform: Callable | Sequence[Callable],
        cache_rate: float = 0.0,
        num_workers: int | None = 1,
        build_workers: int | None = None,
        progress: bool = True,
        **kwargs: Any,
    ) -> None:
        workers = build_workers if build_workers is not None else (num_workers or 0)
        self.build_report = None
        if find_cached_step(transform) is not None:
            self.build_report = build_preprocessed_cache(data, transform, num_workers=workers, progress=progress)
        super().__init__(data, transform, cache_rate=cache_rate, num_workers=num_workers, **kwargs)


# --------------------------------------------------------------------------------------------- record encoding
def quantise_image(image: np.ndarray, exact: bool = True) -> tuple[np.ndarray, int]:
    """``(stored array, levels)`` for a float32 image by the module's storage rule; ``levels`` 0 means float32.

    ``levels`` is 255 (uint8, only when bit-exact), 65535 (uint16: when bit-exact, or with ``exact`` False
    within ``0.5 / 65535``) or 0 (the float32 image itself).
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    if image.size == 0 or not np.isfinite(image).all() or image.min() < 0.0 or image.max() > 1.0:
        return image, 0
    for dtype, levels in ((np.uint8, UINT8_LEVELS), (np.uint16, UINT16_LEVELS)):
        stored = np.rint(image.astype(np.float64) * levels).astype(dtype)
        if np.array_equal(dequantise_image(stored, levels), image) or (levels == UINT16_LEVELS and not exact):
            return stored, levels
    return image, 0


def dequantise_image(stored: np.ndarray, levels: int) -> np.ndarray:
    """The image of :func:`quantise_image`'s output: float32 ``stored / levels``, or ``stored`` itself (levels 0)."""
    if levels == 0:
        return stored
    return stored.astype(np.float32) / np.float32(levels)


def encode_record(output: Mapping[Hashable, Any], image_keys: Sequence[Hashable], exact: bool = True) -> bytes:
    """The data record (:func:`~cxrkd_monai.data.data_record.encode_data`) of the chain's ``output``.

    Float32 images under ``image_keys`` are stored by :func:`quantise_image` (``exact``) with their meta and
    traced operations beside them, the operations' ids replaced by MONAI's ``TraceKeys.NONE`` (ids differ between
    processes); every other value as it is, a ``MetaTensor`` outside ``image_keys`` as its plain tensor. The
    record is ``{"output": {key: value, image keys: stored array}, "images": {key: {"levels", "meta",
    "operations"}}}``, the output's key order kept.
    """
    values: dict[Hashable, Any] = {}
    images: dict[Hashable, dict[str, Any]] = {}
    for key, value in output.items():
        if key in image_keys and isinstance(value, torch.Tensor):
            array = value.as_subclass(torch.Tensor).detach().cpu().numpy()
            array, levels = quantise_image(array, exact) if value.dtype == torch.float32 else (array, 0)
            is_meta = isinstance(value, MetaTensor)
            values[key] = array
            images[key] = {
                "levels": levels,
                "meta": dict(value.meta) if is_meta else None,
                "operations": _anonymous(value.applied_operations) if is_meta else None,
            }
        else:
            values[key] = value
    return encode_data({"output": values, "images": images})


def decode_record(payload: bytes, sources: Mapping[Hashable, str]) -> dict[Hashable, Any]:
    """Inverse of :func:`encode_record`: images float32 (Meta)Tensors again, each image's ``filename_or_obj``
    ``str(Path(sources[key]))``, as the loader records it for the path it is given.

    Raises:
        RecordFormatError: ``payload`` is not a data record of :func:`encode_record`'s layout (e.g. a pickle).
    """
    record = decode_data(payload)
    _check_layout(record)
    decoded = record["output"]
    for key, image in record["images"].items():
        array = decoded[key]
        tensor = torch.from_numpy(dequantise_image(array, image["levels"]))
        if image["meta"] is not None:
            tensor = MetaTensor(tensor, meta=image["meta"], applied_operations=image["operations"])
        decoded[key] = tensor
    for key, source in sources.items():
        image = decoded.get(key)
        if isinstance(image, MetaTensor) and "filename_or_obj" in image.meta:
            image.meta["filename_or_obj"] = str(Path(source))
    return decoded


def _check_layout(record: Any) -> None:
    """Raise :class:`RecordFormatError` unless ``record`` has :func:`encode_record`'s layout."""
    if type(record) is not dict or set(record) != {"images", "output"}:
        raise RecordFormatError("it is a data record, but not of a preprocessed item")
    output, images = record["output"], record["images"]
    if type(output) is not dict or type(images) is not dict:
        raise RecordFormatError("its 'output' or 'images' is not a dict")
    for key, image in images.items():
        if (
            not isinstance(output.get(key), np.ndarray)
            or type(image) is not dict
            or set(image) != {"levels", "meta", "operations"}
            or type(image["levels"]) is not int
            or image["levels"] not in (0, UINT8_LEVELS, UINT16_LEVELS)
            or not isinstance(image["meta"], (dict, type(None)))
            or not isinstance(image["operations"], (list, type(None)))
        ):
            raise RecordFormatError(f"its image {key!r} is not (array, levels, meta, operations)")


def _plain(value: Any) -> Any:
    """JSON form of an item value that ``json`` does not know (arrays and tensors as nested lists)."""
    return value.tolist() if hasattr(value, "tolist") else repr(value)


def _anonymous(operations: Any) -> Any:
    if isinstance(operations, list):
        return [_anonymous(operation) for operation in operations]
    if isinstance(operations, dict):
        anonymous = {key: _anonymous(value) for key, value in operations.items()}
        if TraceKeys.ID in anonymous:
            anonymous[TraceKeys.ID] = TraceKeys.NONE
        return anonymous
    return operations
