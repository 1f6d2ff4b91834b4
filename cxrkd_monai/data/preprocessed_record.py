"""The record of one item in the preprocessed cache of
:class:`~cxrkd_monai.data.cached_preprocessing.CachedPreprocessingd`: how its images are stored, and its encoding.

Stored form of an image (under ``image_keys``: the step's ``keys``). The in-memory path delivers float32 in
``[0, 1]``; after the area resize of ``Letterboxd`` the values are means of ``k / 255`` (8-bit sources) or
``k / 65535`` and lie on no integer grid.
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
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import TraceKeys

from cxrkd_monai.data.data_record import RecordFormatError, decode_data, encode_data

__all__ = ["UINT8_LEVELS", "UINT16_LEVELS", "decode_record", "dequantise_image", "encode_record", "quantise_image"]

UINT8_LEVELS, UINT16_LEVELS = 255, 65535


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


def _anonymous(operations: Any) -> Any:
    if isinstance(operations, list):
        return [_anonymous(operation) for operation in operations]
    if isinstance(operations, dict):
        anonymous = {key: _anonymous(value) for key, value in operations.items()}
        if TraceKeys.ID in anonymous:
            anonymous[TraceKeys.ID] = TraceKeys.NONE
        return anonymous
    return operations
