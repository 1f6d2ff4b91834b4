"""Batch collation that sets aside the items that a ``RecordFailured`` chain failed on."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from monai.data import list_data_collate

from cxrkd_monai.transforms.failures import FAILURE_KEY

__all__ = ["FAILED_ITEMS_KEY", "DropFailedItems"]

FAILED_ITEMS_KEY = "failed_items"
"""Batch key of the list of ``{"image": <source>, "reason": <reason>}`` records of the items left out."""


class DropFailedItems:
    """``collate_fn`` that collates the items that loaded and lists the ones that failed under ``failed_items``.

    Args:
        collate_fn: collation of the items that loaded, e.g. :func:`monai.data.list_data_collate` or
            :func:`~cxrkd_monai.data.collate_with_annotations`.
        source_key: key of an item's source in a failed item's record (the image path).
        failure_key: key that marks a failed item and holds its reason (see ``RecordFailured``).

    Returns:
        ``collate_fn(loaded_items)`` (``image``: ``(B', C, *S)`` for the ``B'`` items that loaded) with
        ``failed_items``: a list of ``B - B'`` records ``{"image": <source>, "reason": <reason>}`` added. When no
        item of the batch loaded, the batch is ``{"failed_items": [...]}`` alone.

    Example::

        >>> loader = DataLoader(dataset, batch_size=4, collate_fn=DropFailedItems())
        >>> batch = next(iter(loader))   # one of the four files is corrupt
        >>> batch["image"].shape[0], batch["failed_items"]
        (3, [{'image': 'c.png', 'reason': "UnreadableImageError: Image file 'c.png' cannot be decoded ..."}])
    """

    def __init__(
        self,
        collate_fn: Callable[[Sequence[Any]], Any] = list_data_collate,
        source_key: str = "image",
        failure_key: str = FAILURE_KEY,
    ) -> None:
        self.collate_fn = collate_fn
        self.source_key = source_key
        self.failure_key = failure_key

    def __call__(self, batch: Sequence[dict[Hashable, Any]]) -> dict[Hashable, Any]:
        loaded = [item for item in batch if not self._failed(item)]
        failed = [
            {"image": str(item.get(self.source_key)), "reason": str(item[self.failure_key])}
            for item in batch
            if self._failed(item)
        ]
        collated = self.collate_fn(loaded) if loaded else {}
        collated[FAILED_ITEMS_KEY] = failed
        return collated

    def _failed(self, item: Any) -> bool:
        return isinstance(item, dict) and self.failure_key in item
