"""A ``CacheDataset`` whose input errors name the datalist item and surface as the first error a user reads."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from monai.data import CacheDataset

from cxrkd_monai.data.compact_datalist import CompactDatalist
from cxrkd_monai.errors import InputError

__all__ = ["ItemNamingCacheDataset", "datalist_index"]


def datalist_index(data: Sequence, position: int) -> int:
    """The index in its datalist split of the item ``data[position]``, the number messages give an item.

    A :class:`~cxrkd_monai.data.CompactDatalist` keeps each item's index, also when it holds a subset of the split
    (``load_datalist(..., subsets=["D_R"])``: the item at position 0 may be the split's item 7); any other sequence
    is taken to be the whole split.
    """
    return int(data.indices[position]) if isinstance(data, CompactDatalist) else position


logger = logging.getLogger(__name__)


class ItemNamingCacheDataset(CacheDataset):
    """MONAI's :class:`~monai.data.CacheDataset`, with errors about bad input brought to the front.

    MONAI wraps an exception raised by a transform in ``RuntimeError("applying transform ...")``, and a bundle's
    ``ConfigItem`` wraps an exception raised while a component is built (which is when ``CacheDataset`` fills
    its cache) in ``RuntimeError("Failed to instantiate component ...")``: the real cause, e.g. an
    :class:`~cxrkd_monai.errors.UnreadableImageError` naming a truncated file, ends up about 140 lines above
    the last line of the traceback. Here, when item ``i`` fails while it is cached or transformed:

    - an ``ERROR`` log record ``"Datalist item i (image '<path>'): <cause>"`` is written at once, ``i`` the item's
      index in its datalist split (:func:`datalist_index`, also for a subset of the split), so with
      ``python -m monai.bundle run`` it is the first line of the failure output, above any traceback;
    - when the cause is one of the package's :class:`~cxrkd_monai.errors.InputError` types, an error of the same
      type with that message (and a ``datalist_index`` attribute, ``i``) is raised in place of MONAI's wrappers, with
      the original traceback from the transform that raised it, so the cause is also the first exception of
      the traceback, a few lines long; any other exception (a bug) propagates unchanged after the log record.

    Args and behaviour otherwise as :class:`~monai.data.CacheDataset`; items are datalist dicts (``image``: the
    path before loading).
    """

    def _load_cache_item(self, idx: int) -> Any:
        return self._naming_item(idx, super()._load_cache_item)

    def _transform(self, index: int) -> Any:
        return self._naming_item(index, super()._transform)

    def _naming_item(self, index: int, function: Callable[[int], Any]) -> Any:
        try:
            return function(index)
        except Exception as error:
            if hasattr(error, "datalist_index"):  # already named by a nested call (runtime caching)
                raise
            cause = _innermost_input_error(error)
            shown = cause if cause is not None else _innermost(error)
            message = f"{self._describe(index)}: {shown}"
            logger.error("%s (%s)", message, type(shown).__name__)
            if cause is None:
                raise
            named = type(cause)(message)
            named.datalist_index = datalist_index(self.data, index)
            raise named.with_traceback(cause.__traceback__) from None

    def _describe(self, index: int) -> str:
        item = self.data[index]
        image = item.get("image") if isinstance(item, Mapping) else None
        named = f" (image '{image}')" if isinstance(image, str) else ""
        return f"Datalist item {datalist_index(self.data, index)}{named}"


def _innermost(error: BaseException) -> BaseException:
    """The end of ``error``'s ``__cause__`` chain."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _innermost_input_error(error: BaseException) -> InputError | None:
    """The deepest :class:`InputError` in ``error``'s chain of causes and contexts, if any."""
    found = None
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, InputError):
            found = current
        current = current.__cause__ or current.__context__
    return found
