"""Multi-label F1 at a probability threshold over the observed labels: per class, macro and micro."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from cxrkd_monai.metrics.masked import MaskedMultiLabelMetric, observed_entries

__all__ = ["F1_AVERAGES", "MultiLabelF1Metric", "micro_f1", "per_class_f1"]

F1_AVERAGES = ("macro", "micro")

ArrayLike = np.ndarray | torch.Tensor


def _counts(
    probabilities: ArrayLike, labels: ArrayLike, mask: ArrayLike | None, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class true positives, false positives and false negatives ``(C,)`` over the observed entries."""
    p, y, observed = observed_entries(probabilities, labels, mask)
    predicted, actual = (p >= threshold) & observed, (y > 0.5) & observed
    return (predicted & actual).sum(0), (predicted & ~actual).sum(0), (~predicted & actual).sum(0)


def _f1(tp: float, fp: float, fn: float) -> float:
    """``2 TP / (2 TP + FP + FN)``; ``nan`` with no positive, predicted or actual."""
    denominator = 2 * tp + fp + fn
    return float(2 * tp / denominator) if denominator else math.nan


def per_class_f1(
    probabilities: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None, threshold: float = 0.5
) -> list[float]:
    """F1 of each class, a probability ``>= threshold`` predicting positive, over its observed entries.

    Args:
        probabilities: ``(N, C)``.
        labels: binary ``(N, C)``.
        mask: ``(N, C)``, 1 where the label is observed.
        threshold: decision threshold.

    Returns:
        C values; ``nan`` for a class with no observed positive and no positive prediction (F1 is 0 / 0).
    """
    return [_f1(*counts) for counts in zip(*_counts(probabilities, labels, mask, threshold))]


def micro_f1(
    probabilities: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None, threshold: float = 0.5
) -> float:
    """F1 of every observed (image, class) decision pooled: ``2 ΣTP / (2 ΣTP + ΣFP + ΣFN)``; inputs ``(N, C)``."""
    tp, fp, fn = _counts(probabilities, labels, mask, threshold)
    return _f1(tp.sum(), fp.sum(), fn.sum())


class MultiLabelF1Metric(MaskedMultiLabelMetric):
    """Accumulates ``(probabilities, label, mask)`` batches and returns the macro or micro F1 at ``threshold``.

    - ``average="macro"``: the mean of the per-class F1 values where defined (sklearn's
      ``f1_score(average="macro", zero_division=np.nan)`` on each class's observed entries); :attr:`per_class`
      holds the per-class values.
    - ``average="micro"``: one F1 from the true/false positives and false negatives of all observed entries.

    Args:
        class_names: names of the C classes, in label order.
        average: ``"macro"`` or ``"micro"``.
        threshold: a probability ``>= threshold`` predicts positive.
    """

    def __init__(self, class_names: Sequence[str], average: str = "macro", threshold: float = 0.5) -> None:
        super().__init__(class_names)
        if average not in F1_AVERAGES:
            raise ValueError(f"average must be one of {F1_AVERAGES}, got {average!r}.")
        self.average = average
        self.threshold = float(threshold)

    def compute_observed(self, scores: np.ndarray, labels: np.ndarray, observed: np.ndarray) -> float:
        if self.average == "micro":
            return micro_f1(scores, labels, observed, self.threshold)
        values = per_class_f1(scores, labels, observed, self.threshold)
        self.per_class = dict(zip(self.class_names, values))
        defined = [v for v in values if not math.isnan(v)]
        return float(np.mean(defined)) if defined else math.nan
