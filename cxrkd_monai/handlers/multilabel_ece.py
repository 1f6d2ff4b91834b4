"""Ignite handler of the expected calibration error of multi-label probabilities over the observed labels."""

from __future__ import annotations

from collections.abc import Callable

from cxrkd_monai.handlers.masked_multilabel import MaskedMultiLabelHandler
from cxrkd_monai.metrics.calibration import MultiLabelECEMetric

__all__ = ["MultiLabelECE"]


class MultiLabelECE(MaskedMultiLabelHandler):
    """Ignite handler for :class:`~cxrkd_monai.metrics.MultiLabelECEMetric` (lower is better).

    See :class:`~cxrkd_monai.handlers.MaskedMultiLabelHandler` for the transforms and the per-class values.
    """

    def __init__(
        self, num_bins: int = 10, output_transform: Callable = lambda x: x, mask_transform: Callable | None = None
    ) -> None:
        super().__init__(MultiLabelECEMetric(num_bins), output_transform, mask_transform)
