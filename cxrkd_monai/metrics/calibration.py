"""Expected calibration error of multi-label probabilities over the observed labels."""

from __future__ import annotations

import numpy as np
import torch

from cxrkd_monai.metrics.masked import MaskedMultiLabelMetric, observed_entries

__all__ = ["MultiLabelECEMetric", "expected_calibration_error"]


def expected_calibration_error(
    probabilities: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    num_bins: int = 10,
    mask: np.ndarray | torch.Tensor | None = None,
) -> float:
    """ECE over every observed (image, class) entry: ``Σ_b (n_b / N) · |mean(p in b) − mean(y in b)|``.

    Args:
        probabilities: predicted probabilities ``(N, C)`` in [0, 1].
        labels: binary labels ``(N, C)``.
        num_bins: equal-width bins over [0, 1]; a probability of exactly 1 falls in the last bin.
        mask: ``(N, C)``, 1 where the label is observed; unobserved entries are left out (N counts observed ones).
    """
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}.")
    try:
        p, y, observed = observed_entries(probabilities, labels, mask)
    except ValueError:
        raise ValueError(
            f"probabilities {tuple(np.shape(probabilities))} and labels {tuple(np.shape(labels))} differ "
            f"(or the mask {None if mask is None else tuple(np.shape(mask))} does); all must be (N, C)."
        ) from None
    p, y = p[observed], y[observed]
    if p.size == 0:
        return float("nan")
    bins = np.minimum((p * num_bins).astype(int), num_bins - 1)
    error = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        error += in_bin.mean() * abs(p[in_bin].mean() - y[in_bin].mean())
    return float(error)


class MultiLabelECEMetric(MaskedMultiLabelMetric):
    """Accumulates ``(probabilities (B, C), labels (B, C), mask (B, C))`` and aggregates their ECE."""

    def __init__(self, num_bins: int = 10) -> None:
        super().__init__()
        self.num_bins = num_bins

    def compute_observed(self, scores: np.ndarray, labels: np.ndarray, observed: np.ndarray) -> float:
        return expected_calibration_error(scores, labels, self.num_bins, observed)
