"""Multi-label AUROC over the observed labels: per class, macro and micro."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

from cxrkd_monai.metrics.masked import MaskedMultiLabelMetric, observed_entries
from cxrkd_monai.metrics.rank_auroc import rank_auroc

__all__ = ["AUROC_AVERAGES", "MultiLabelAUROCMetric", "micro_auroc", "per_class_auroc"]

logger = logging.getLogger(__name__)

AUROC_AVERAGES = ("macro", "micro")

ArrayLike = np.ndarray | torch.Tensor


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC of 1-D ``scores`` against ``labels``; ``nan`` when the labels hold one value only.

    The rank-sum form equals scikit-learn's ``roc_auc_score`` and is fast enough for the bootstrap intervals of
    evaluation, which recompute every class's AUROC on each resample.
    """
    return rank_auroc(labels, scores)


def per_class_auroc(scores: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None) -> list[float]:
    """AUROC of each column of ``scores`` (N, C) against binary ``labels`` (N, C), over its observed entries.

    ``mask`` (N, C), 1 for an observed label, excludes the rest. A class whose observed labels are all one value
    has no AUROC and gives ``nan``.
    """
    scores, labels, observed = observed_entries(scores, labels, mask)
    return [_auroc(labels[observed[:, c], c], scores[observed[:, c], c]) for c in range(labels.shape[1])]


def micro_auroc(scores: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None) -> float:
    """AUROC of every observed (image, class) entry pooled into one ranking; ``scores``, ``labels``: (N, C)."""
    scores, labels, observed = observed_entries(scores, labels, mask)
    return _auroc(labels[observed], scores[observed])


class MultiLabelAUROCMetric(MaskedMultiLabelMetric):
    """Accumulates ``(pred, label, mask)`` batches and returns the macro or micro AUROC of the observed labels.

    - ``average="macro"``: the mean of the per-class AUROCs where defined (a class with one observed label value
      is left out, with a warning); :attr:`per_class` holds the per-class values.
    - ``average="micro"``: one AUROC over all observed entries pooled.

    Args:
        class_names: names of the C classes, in label order.
        average: ``"macro"`` or ``"micro"``.

    ``pred``: probabilities or scores ``(B, C)`` (or a list of ``(C,)`` after decollation); ``label``: binary
    ``(B, C)``; ``mask``: ``(B, C)``, 1 where the label is observed.
    """

    def __init__(self, class_names: Sequence[str], average: str = "macro") -> None:
        super().__init__(class_names)
        if average not in AUROC_AVERAGES:
            raise ValueError(f"average must be one of {AUROC_AVERAGES}, got {average!r}.")
        self.average = average

    def compute_observed(self, scores: np.ndarray, labels: np.ndarray, observed: np.ndarray) -> float:
        if self.average == "micro":
            return micro_auroc(scores, labels, observed)
        values = per_class_auroc(scores, labels, observed)
        self.per_class = dict(zip(self.class_names, values))
        undefined = [name for name, v in self.per_class.items() if math.isnan(v)]
        if undefined:
            logger.warning("AUROC undefined (one label value only) for %s; left out of the macro mean.", undefined)
        defined = [v for v in values if not math.isnan(v)]
        return float(np.mean(defined)) if defined else math.nan
