"""Radiographs and probability maps for MONAI's ``TensorBoardImageHandler``, shown upright.

The package keeps 2D images as ``(C, W, H)`` (axis 0 is x, see ``docs/architecture.md``), while TensorBoard reads
the last two axes as rows and columns. Handing it the tensors unchanged would show every radiograph transposed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["upright_from_engine"]


def _upright(value: Any) -> Any:
    """``(C, W, H)`` -> ``(C, H, W)``; anything that is not a 2D channel-first image is returned as it is."""
    if isinstance(value, torch.Tensor) and value.dim() == 3:
        return value.detach().as_subclass(torch.Tensor).transpose(-2, -1)
    return value


def upright_from_engine(keys: str | None | Sequence[str | None]) -> Callable[[Any], Any]:
    """Like :func:`monai.handlers.from_engine`, for ``TensorBoardImageHandler``'s batch and output transforms.

    Returns a callable that takes ``engine.state.batch`` or ``engine.state.output`` (a decollated list of
    dicts, or a collated dict whose values under ``keys`` have a leading batch axis) and gives, for each key,
    the list of per-item values with every ``(C, W, H)`` image transposed to ``(C, H, W)``; a ``None`` key gives
    ``None`` for every item (the handler then draws nothing for that slot). One key gives its list, several a
    tuple of lists.

    Example (the validator shows its first image and nothing as label)::

        TensorBoardImageHandler(batch_transform=upright_from_engine(["image", None]),
                                output_transform=upright_from_engine(None))
    """
    key_tuple = (keys,) if keys is None or isinstance(keys, str) else tuple(keys)

    def _views(data: Any) -> Any:
        views = [_per_item(data, key) for key in key_tuple]
        return views[0] if len(views) == 1 else tuple(views)

    return _views


def _per_item(data: Any, key: str | None) -> list:
    """The upright values of ``key`` for each item of a decollated list or along a collated dict's batch axis."""
    if isinstance(data, list):
        return [None if key is None else _upright(item[key]) for item in data]
    if key is None:
        batch_size = next(len(value) for value in data.values() if isinstance(value, torch.Tensor))
        return [None] * batch_size
    return [_upright(value) for value in data[key]]
