"""Multi-label AUROC: one value per class plus their macro mean, as an Ignite metric handler."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.handlers import IgniteMetricHandler
from monai.metrics import CumulativeIterationMetric
from sklearn.metrics import roc_auc_score

__all__ = ["MultiLabelAUROC", "MultiLabelAUROCMetric", "per_class_auroc"]

logger = logging.getLogger(__name__)


def per_class_auroc(
    scores: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor | None = None
) -> list[float]:
    """AUROC of each column of ``scores`` (N, C) against binary ``labels`` (N, C).

    A class whose observed labels are all one value has no AUROC and gives ``nan``. ``mask`` (N, C), 1 for
    an observed label, excludes the rest.
    """
    scores = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    labels = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.float64)
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must both be (N, C).")
    if mask is None:
        observed = np.ones_like(labels, dtype=bool)
    else:
        observed = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask) > 0.5
    values = []
    for c in range(labels.shape[1]):
        y, s = labels[observed[:, c], c], scores[observed[:, c], c]
        values.append(float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else math.nan)
    return values


class MultiLabelAUROCMetric(CumulativeIterationMetric):
    """Accumulates ``(pred, label)`` batches and returns the macro AUROC over classes where it is defined.

    Args:
        class_names: names of the C classes, in label order.

    ``pred``: probabilities or scores ``(B, C)`` (or a list of ``(C,)`` after decollation);
    ``label``: binary ``(B, C)``. :attr:`per_class` holds the last per-class values.
    """

    def __init__(self, class_names: Sequence[str]) -> None:
        super().__init__()
        self.class_names = list(class_names)
        self.per_class: dict[str, float] = {}

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y_pred, y = torch.as_tensor(y_pred), torch.as_tensor(y)
        if y_pred.ndim == 1:
            y_pred, y = y_pred[None], y[None]
        expected = len(self.class_names)
        if y_pred.shape[-1] != expected or y.shape[-1] != expected:
            raise ValueError(
                f"MultiLabelAUROC expects {expected} classes {self.class_names}, "
                f"got pred {tuple(y_pred.shape)} and label {tuple(y.shape)}."
            )
        return y_pred.float(), y.float()

    def aggregate(self) -> float:
        y_pred, y = self.get_buffer()
        values = per_class_auroc(y_pred, y)
        self.per_class = dict(zip(self.class_names, values))
        undefined = [name for name, v in self.per_class.items() if math.isnan(v)]
        if undefined:
            logger.warning("AUROC undefined (one label value only) for %s; left out of the macro mean.", undefined)
        defined = [v for v in values if not math.isnan(v)]
        return float(np.mean(defined)) if defined else math.nan


class MultiLabelAUROC(IgniteMetricHandler):
    """Ignite handler for :class:`MultiLabelAUROCMetric`.

    Its value (``engine.state.metrics[name]``) is the macro AUROC; at each completion it also stores
    ``engine.state.metrics[f"{name}_{class_name}"]`` for every class, so that stats, TensorBoard and
    metric writers see the per-class figures.

    Example (bundle JSON)::

        "val_macro_auroc": {"_target_": "cxrkd_monai.metrics.MultiLabelAUROC",
                            "class_names": "@class_names",
                            "output_transform": "$monai.handlers.from_engine(['pred', 'label'])"}
    """

    def __init__(self, class_names: Sequence[str], output_transform: Callable = lambda x: x) -> None:
        super().__init__(
            metric_fn=MultiLabelAUROCMetric(class_names), output_transform=output_transform, save_details=False
        )

    def completed(self, engine, name: str) -> None:
        super().completed(engine, name)
        for class_name, value in self.metric_fn.per_class.items():
            engine.state.metrics[f"{name}_{class_name}"] = value
