"""Ignite handler of the multi-label F1 at a probability threshold over the observed labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cxrkd_monai.handlers.masked_multilabel import MaskedMultiLabelHandler
from cxrkd_monai.metrics.f1 import MultiLabelF1Metric

__all__ = ["MultiLabelF1"]


class MultiLabelF1(MaskedMultiLabelHandler):
    """Ignite handler for :class:`~cxrkd_monai.metrics.MultiLabelF1Metric`; the macro handler also stores per-class
    values.

    Example (bundle JSON)::

        "macro_f1_at_0.5": {"_target_": "cxrkd_monai.handlers.MultiLabelF1", "class_names": "@class_names",
                            "average": "macro", "threshold": 0.5,
                            "output_transform": "$monai.handlers.from_engine(['pred_prob', 'label'])",
                            "mask_transform": "$monai.handlers.from_engine(['label_mask'])"}
    """

    def __init__(
        self,
        class_names: Sequence[str],
        average: str = "macro",
        threshold: float = 0.5,
        output_transform: Callable = lambda x: x,
        mask_transform: Callable | None = None,
    ) -> None:
        super().__init__(MultiLabelF1Metric(class_names, average, threshold), output_transform, mask_transform)
