"""Percentile bootstrap confidence intervals over images, for any image-set statistic (AUROC, FROC, ...)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["BootstrapInterval", "bootstrap_interval"]


@dataclass(frozen=True)
class BootstrapInterval:
    """A statistic on the whole set and its percentile bootstrap interval.

    Attributes:
        estimate: the statistic on the original set.
        low, high: the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the statistic over the
            resamples where it is defined (NaN when it is defined on none).
        confidence: the nominal coverage, e.g. 0.95.
        num_resamples: resamples drawn.
        num_defined: resamples where the statistic was finite (an AUROC resample holding one class is not).
    """

    estimate: float
    low: float
    high: float
    confidence: float
    num_resamples: int
    num_defined: int

    def format(self, digits: int = 3) -> str:
        """``0.812 [0.741, 0.873]``, or ``n/a`` for an undefined estimate."""
        if not math.isfinite(self.estimate):
            return "n/a"
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    num_items: int,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapInterval:
    """Percentile bootstrap over items (images): resample ``num_items`` indices with replacement, recompute.

    ``statistic`` receives an int array ``(num_items,)`` of item indices (``arange(num_items)`` for the estimate,
    a resample otherwise; an index may repeat) and returns a float, NaN where it is undefined. Resample ``r``
    draws ``numpy.random.default_rng(seed).integers(0, num_items, num_items)`` in turn, so a given seed always
    gives the same resamples, and two statistics bootstrapped with one seed see the same resamples (paired).

    Args:
        statistic: maps item indices to the statistic.
        num_items: number of items ``N`` (images).
        num_resamples: bootstrap resamples ``R``.
        confidence: coverage of the two-sided interval, in ``(0, 1)``.
        seed: seed of the resampling generator.

    Example::

        scores, labels = np.array([0.9, 0.2, 0.7, 0.4]), np.array([1, 0, 1, 0])
        interval = bootstrap_interval(lambda i: roc_auc_score(labels[i], scores[i])
                                      if len(set(labels[i])) == 2 else float("nan"), num_items=4)
    """
    if num_items < 1:
        raise ValueError(f"num_items must be >= 1, got num_items={num_items}.")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got num_resamples={num_resamples}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got confidence={confidence}.")
    estimate = float(statistic(np.arange(num_items)))
    rng = np.random.default_rng(seed)
    values = np.array([float(statistic(rng.integers(0, num_items, num_items))) for _ in range(num_resamples)])
    defined = values[np.isfinite(values)]
    if len(defined):
        low, high = np.percentile(defined, [50.0 * (1.0 - confidence), 50.0 * (1.0 + confidence)])
    else:
        low = high = math.nan
    return BootstrapInterval(estimate, float(low), float(high), confidence, num_resamples, len(defined))
