"""Ignite handler of the multi-label AUROC over the observed labels: macro or micro, and per class."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cxrkd_monai.handlers.masked_multilabel import MaskedMultiLabelHandler
from cxrkd_monai.metrics.auroc import MultiLabelAUROCMetric

__all__ = ["MultiLabelAUROC"]


class MultiLabelAUROC(MaskedMultiLabelHandler):
    """Ignite handler for :class:`~cxrkd_monai.metrics.MultiLabelAUROCMetric`.

    Its value (``engine.state.metrics[name]``) is the macro (or micro) AUROC; the macro handler also stores
    ``engine.state.metrics[f"{name}_{class_name}"]`` for every class.

    Example (bundle JSON)::

        "val_macro_auroc": {"_target_": "cxrkd_monai.handlers.MultiLabelAUROC",
                            "class_names": "@class_names",
                            "output_transform": "$monai.handlers.from_engine(['pred', 'label'])",
                            "mask_transform": "$monai.handlers.from_engine(['label_mask'])"}
    """

    def __init__(
        self,
        class_names: Sequence[str],
        average: str = "macro",
        output_transform: Callable = lambda x: x,
        mask_transform: Callable | None = None,
    ) -> None:
        super().__init__(MultiLabelAUROCMetric(class_names, average), output_transform, mask_transform)
