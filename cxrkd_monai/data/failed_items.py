"""Loading that survives bad items: a dataset that turns a failed item into a record, a collate that drops it."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from monai.data import Dataset, list_data_collate

from cxrkd_monai.transforms.failures import FAILURE_KEY, RecordFailured

__all__ = ["FAILED_ITEMS_KEY", "DropFailedItems", "FailureTolerantDataset"]

FAILED_ITEMS_KEY = "failed_items"
"""Batch key of the list of ``{"image": <source>, "reason": <reason>}`` records of the items left out."""


class FailureTolerantDataset(Dataset):
    """:class:`monai.data.Dataset` whose items that raise in ``transform`` come out as failure records.

    ``transform`` runs inside :class:`~cxrkd_monai.transforms.failures.RecordFailured`: an item that cannot be
    loaded or transformed (unreadable, corrupt, wrong modality, ...) is returned as
    ``{source_key: <source>, failure_key: "<ErrorType>: <message>"}`` instead of ending the run. Collate with
    :class:`DropFailedItems`, so that batches hold only the items that loaded. ``transform`` stays the bundle's
    ``preprocessing`` (a config's ``dataset#transform`` is ``@preprocessing``).

    Args:
        data: the items, e.g. ``[{"image": "a.png"}, ...]``.
        transform: the per-item chain.
        source_key: key of an item's source (the image path).
        failure_key: key of the reason in a failure record.

    Example::

        dataset = FailureTolerantDataset([{"image": "a.png"}, {"image": "corrupt.png"}], transform=preprocessing)
        dataset[1]   # {'image': 'corrupt.png', 'failure': "UnreadableImageError: Image file 'corrupt.png' ..."}
    """

    def __init__(
        self,
        data: Sequence[dict[Hashable, Any]],
        transform: Callable[[Any], Any],
        source_key: str = "image",
        failure_key: str = FAILURE_KEY,
    ) -> None:
        super().__init__(data, transform=RecordFailured(transform, source_key, failure_key))


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
