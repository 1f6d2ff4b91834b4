"""Expected calibration error of multi-label probabilities, as an Ignite metric handler."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.handlers import IgniteMetricHandler
from monai.metrics import CumulativeIterationMetric

__all__ = ["MultiLabelECE", "MultiLabelECEMetric", "expected_calibration_error"]


def expected_calibration_error(
    probabilities: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, num_bins: int = 10
) -> float:
    """ECE over every (image, class) entry: ``Σ_b (n_b / N) · |mean(p in b) − mean(y in b)|``.

    Args:
        probabilities: predicted probabilities ``(N, C)`` in [0, 1].
        labels: binary labels ``(N, C)``.
        num_bins: equal-width bins over [0, 1]; a probability of exactly 1 falls in the last bin.
    """
    p = np.asarray(torch.as_tensor(probabilities).detach().cpu(), dtype=np.float64).reshape(-1)
    y = np.asarray(torch.as_tensor(labels).detach().cpu(), dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"probabilities {tuple(np.shape(probabilities))} and labels {tuple(np.shape(labels))} differ.")
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}.")
    bins = np.minimum((p * num_bins).astype(int), num_bins - 1)
    error = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        error += in_bin.mean() * abs(p[in_bin].mean() - y[in_bin].mean())
    return float(error)


class MultiLabelECEMetric(CumulativeIterationMetric):
    """Accumulates ``(probabilities (B, C), labels (B, C))`` and aggregates their ECE."""

    def __init__(self, num_bins: int = 10) -> None:
        super().__init__()
        self.num_bins = num_bins

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y_pred, y = torch.as_tensor(y_pred).float(), torch.as_tensor(y).float()
        return (y_pred[None], y[None]) if y_pred.ndim == 1 else (y_pred, y)

    def aggregate(self) -> float:
        y_pred, y = self.get_buffer()
        return expected_calibration_error(y_pred, y, self.num_bins)


class MultiLabelECE(IgniteMetricHandler):
    """Ignite handler for :class:`MultiLabelECEMetric` (lower is better)."""

    def __init__(self, num_bins: int = 10, output_transform: Callable = lambda x: x) -> None:
        super().__init__(metric_fn=MultiLabelECEMetric(num_bins), output_transform=output_transform, save_details=False)
