"""Per-item fault tolerance: a failed item becomes a record of its source and reason instead of an exception."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from monai.transforms import Transform

__all__ = ["FAILURE_KEY", "RecordFailured", "failure_reason"]

FAILURE_KEY = "failure"
"""Key under which :class:`RecordFailured` puts the reason of a failed item."""

MONAI_WRAPPER_PREFIX = "applying transform "


def failure_reason(error: BaseException) -> str:
    """``"<ErrorType>: <message>"`` of the error a transform raised, without MONAI's wrapping.

    MONAI's ``apply_transform`` (used by ``Compose``) re-raises a transform's exception as
    ``RuntimeError("applying transform ...")`` from the original; those wrappers are skipped, so the reason is the
    transform's own error, e.g. ``UnreadableImageError: Image file 'a.png' cannot be decoded: ...``.
    """
    while isinstance(error, RuntimeError) and str(error).startswith(MONAI_WRAPPER_PREFIX) and error.__cause__:
        error = error.__cause__
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class RecordFailured(Transform):
    """Applies ``transform`` to one item; if it raises, returns ``{source_key: <source>, failure_key: <reason>}``.

    Wrap a dataset's whole per-item chain with it (loading, geometry, type conversion; or use
    :class:`~cxrkd_monai.data.failed_items.FailureTolerantDataset`, which does), so that one unreadable or corrupt
    image does not abort a run: the failed item travels on as a small record that
    :class:`~cxrkd_monai.data.failed_items.DropFailedItems` removes from its batch and
    :class:`~cxrkd_monai.handlers.FailedItemsWriter` writes to ``errors.csv``. Only ``Exception`` is caught;
    ``KeyboardInterrupt`` and ``SystemExit`` still stop the run.

    Args:
        transform: the per-item chain, e.g. a ``Compose`` of ``LoadCXRd``, ``Letterboxd``, ``EnsureTyped``.
        source_key: key of the item's source (the image path, read before ``transform`` replaces it).
        failure_key: key of the reason in a failed item's record.

    Input: a dict item, e.g. ``{"image": "a.png"}``. Output: ``transform(item)``, or on failure
    ``{"image": "a.png", "failure": "UnreadableImageError: Image file 'a.png' ..."}`` (see :func:`failure_reason`).

    Example::

        chain = Compose([LoadCXRd("image"), Letterboxd("image", (224, 224))])
        dataset = Dataset(items, transform=RecordFailured(chain))
    """

    def __init__(
        self, transform: Callable[[Any], Any], source_key: str = "image", failure_key: str = FAILURE_KEY
    ) -> None:
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}.")
        self.transform = transform
        self.source_key = source_key
        self.failure_key = failure_key

    def __call__(self, data: Mapping[Hashable, Any]) -> Any:
        source = str(data.get(self.source_key, f"<item without '{self.source_key}'>"))
        try:
            return self.transform(data)
        except Exception as error:
            return {self.source_key: source, self.failure_key: failure_reason(error)}
