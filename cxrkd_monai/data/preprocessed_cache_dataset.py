"""The bundles' dataset: MONAI's ``CacheDataset`` over the preprocessed disk cache, filled when it is built."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from cxrkd_monai.data.cached_preprocessing import find_cached_step
from cxrkd_monai.data.dataset import ItemNamingCacheDataset
from cxrkd_monai.data.preprocessed_cache_builder import build_preprocessed_cache

__all__ = ["PreprocessedCacheDataset"]


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
