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

How an image is stored, and the record's format: :mod:`cxrkd_monai.data.preprocessed_record`. The cache is filled
ahead of a run by :func:`~cxrkd_monai.data.preprocessed_cache_builder.build_preprocessed_cache`, which
:class:`~cxrkd_monai.data.preprocessed_cache_dataset.PreprocessedCacheDataset` runs when it is built; an entry
that is missing or fails its checksum when read is rebuilt on the spot by :class:`CachedPreprocessingd`.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.config import KeysCollection
from monai.transforms import Compose, MapTransform, Randomizable
from monai.utils import ensure_tuple

from cxrkd_monai.data.data_record import RecordFormatError
from cxrkd_monai.data.preprocessed_record import decode_record, encode_record
from cxrkd_monai.data.preprocessed_store import FORMAT_VERSION, PreprocessedStore, digest

__all__ = ["IMAGE_STORAGE", "CachedPreprocessingd", "find_cached_step"]

logger = logging.getLogger(__name__)

IMAGE_STORAGE = ("exact", "uint16")
"""The storage rules of :func:`~cxrkd_monai.data.preprocessed_record.quantise_image`, by name."""


class CachedPreprocessingd(MapTransform):
    """Run a deterministic chain of transforms once per source file and keep its output on disk.

    ``CachedPreprocessingd(transforms)(item)`` equals ``Compose(transforms)(item)`` (the image within the
    storage rule of :mod:`cxrkd_monai.data.preprocessed_record`; everything else exactly), and from the second
    call on a source file it reads the stored output instead of running ``transforms``.

    Args:
        transforms: the deterministic chain, e.g. ``[LoadCXRd("image"), Letterboxd("image", (224, 224))]``.
            It must not hold random transforms.
        cache_dir: the cache folder (shared by settings, bundles and processes).
        keys: the item keys holding source file paths; their loaded images are the stored arrays.
        item_keys: the other item keys the chain reads (e.g. ``boxes``, ``points``, ``image_label``,
            ``subset`` for ``EncodeFractureAnnotationsd``). Their values are part of the entry's key, and they
            are the only other keys the chain is given.
        image_storage: ``"exact"`` or ``"uint16"``, the storage rule of :mod:`cxrkd_monai.data.preprocessed_record`.
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


def _plain(value: Any) -> Any:
    """JSON form of an item value that ``json`` does not know (arrays and tensors as nested lists)."""
    return value.tolist() if hasattr(value, "tolist") else repr(value)
