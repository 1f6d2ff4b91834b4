"""Per-class temperature scaling: the temperature that minimises the labelled set's negative log-likelihood.

Each class ``c`` gets one temperature ``T_c`` applied to the logit of its probability,
``p_cal = sigmoid(logit(p) / T_c)`` (:func:`~cxrkd_monai.transforms.calibration.temperature_scale`). ``T_c`` minimises
the mean binary cross-entropy of ``p_cal`` over the observed labels of the class; the optimisation runs on
``log T_c`` (so ``T_c`` stays positive) with L-BFGS and a strong-Wolfe line search. Classes are independent, so all
are fitted together by minimising the sum of their mean NLLs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cxrkd_monai.metrics.masked import observed_entries
from cxrkd_monai.transforms.calibration import temperature_scale

__all__ = ["TemperatureFit", "binary_nll", "fit_temperature"]


@dataclass(frozen=True)
class TemperatureFit:
    """Fitted temperatures and the per-class NLL before and after.

    Attributes:
        temperature: ``(C,)``; 1.0 for a class that could not be fitted (fewer than both label values observed).
        nll_before: ``(C,)`` mean NLL of the uncalibrated probabilities over each class's observed labels.
        nll_after: ``(C,)`` the same for the calibrated probabilities (``<= nll_before`` up to the optimiser's
            tolerance).
        fitted: ``(C,)`` whether the class was fitted.
    """

    temperature: np.ndarray
    nll_before: np.ndarray
    nll_after: np.ndarray
    fitted: np.ndarray


def binary_nll(probabilities: torch.Tensor, labels: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of each class over its observed entries.

    Args:
        probabilities: ``(N, C)``, clamped to ``[1e-6, 1 - 1e-6]``.
        labels: binary ``(N, C)``.
        observed: bool ``(N, C)``.

    Returns:
        ``(C,)``; NaN for a class without observed entries.
    """
    p = probabilities.clamp(1e-6, 1.0 - 1e-6)
    losses = -(labels * torch.log(p) + (1.0 - labels) * torch.log1p(-p))
    losses = torch.where(observed, losses, torch.zeros_like(losses))
    return losses.sum(dim=0) / observed.sum(dim=0)


def fit_temperature(
    probabilities: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None = None,
    max_iter: int = 100,
) -> TemperatureFit:
    """Fits one temperature per class by minimising the NLL of the observed labels.

    Args:
        probabilities: ``(N, C)`` uncalibrated probabilities (VKD: the Monte Carlo mean).
        labels: binary ``(N, C)``.
        mask: ``(N, C)``, 1 where the label is observed.
        max_iter: L-BFGS iterations.

    Returns:
        the :class:`TemperatureFit`.

    Example::

        fit = fit_temperature(validation_probabilities, validation_labels, validation_mask)
        calibrated = temperature_scale(torch.as_tensor(test_probabilities), torch.as_tensor(fit.temperature))
    """
    scores, targets, observed = observed_entries(probabilities, labels, mask)
    p, y, seen = torch.from_numpy(scores), torch.from_numpy(np.nan_to_num(targets)), torch.from_numpy(observed)
    positives, negatives = (seen & (y > 0.5)).sum(dim=0), (seen & (y <= 0.5)).sum(dim=0)
    fitted = (positives > 0) & (negatives > 0)
    log_temperature = torch.zeros(p.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_temperature], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        nll = binary_nll(temperature_scale(p, log_temperature.exp()), y, seen)
        loss = nll[fitted].sum()
        loss.backward()
        return loss

    if bool(fitted.any()):
        optimizer.step(closure)
    with torch.no_grad():
        temperature = torch.where(fitted, log_temperature.exp(), torch.ones_like(log_temperature))
        nll_before = binary_nll(temperature_scale(p, torch.ones_like(temperature)), y, seen)
        nll_after = binary_nll(temperature_scale(p, temperature), y, seen)
    return TemperatureFit(temperature.numpy(), nll_before.numpy(), nll_after.numpy(), fitted.numpy())
