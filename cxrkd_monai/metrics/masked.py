"""Multi-label metrics over the observed entries only: the shared accumulation.

A multi-label dataset does not observe every label of every image (``label_mask`` is 0 where a label is
unknown, see :mod:`cxrkd_monai.prepare.labels`). The loss leaves those entries out, and so does every metric
built here: a masked entry is neither a positive nor a negative, whatever value its label holds. The Ignite handler of
these metrics is :class:`~cxrkd_monai.handlers.MaskedMultiLabelHandler`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric

__all__ = ["MaskedMultiLabelMetric", "as_batch", "observed_entries"]

ArrayLike = np.ndarray | torch.Tensor


def _numpy(values: ArrayLike) -> np.ndarray:
    return np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)


def observed_entries(
    scores: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scores, labels, observed)`` as ``(N, C)`` float64, float64 and bool arrays.

    Args:
        scores: predicted scores or probabilities ``(N, C)``.
        labels: binary labels ``(N, C)``; an unobserved entry may hold anything, NaN included.
        mask: ``(N, C)``, 1 where the label is observed; ``None`` observes every entry.
    """
    scores, labels = _numpy(scores), _numpy(labels)
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must both be (N, C).")
    if mask is None:
        return scores, labels, np.ones(labels.shape, dtype=bool)
    mask = _numpy(mask)
    if mask.shape != labels.shape:
        raise ValueError(f"mask {mask.shape} must have the shape of labels {labels.shape}.")
    return scores, labels, mask > 0.5


def as_batch(values: ArrayLike | Sequence[ArrayLike]) -> torch.Tensor:
    """A ``(B, C)`` float tensor from a batch tensor or from a decollated list of ``(C,)`` items."""
    if isinstance(values, (list, tuple)):
        return torch.stack([torch.as_tensor(v) for v in values]).float()
    values = torch.as_tensor(values).float()
    return values[None] if values.ndim == 1 else values


class MaskedMultiLabelMetric(CumulativeIterationMetric):
    """Accumulates ``pred`` ``(B, C)``, ``label`` ``(B, C)`` and ``mask`` ``(B, C)`` over iterations.

    :meth:`aggregate` hands the whole buffer, as numpy arrays with a boolean ``observed`` array, to
    :meth:`compute_observed`, which subclasses implement. Per-class values, where the metric has them, go to
    :attr:`per_class` (class name -> value).

    Args:
        class_names: names of the C classes, in label order; ``None`` accepts any C.

    Call it as ``metric(pred, label, mask=mask)``; without ``mask`` every entry is observed.
    """

    def __init__(self, class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        self.class_names = list(class_names) if class_names is not None else None
        self.per_class: dict[str, float] = {}

    def _compute_tensor(
        self, y_pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y_pred, y = as_batch(y_pred), as_batch(y)
        mask = torch.ones_like(y) if mask is None else as_batch(mask).to(y.device)
        name = type(self).__name__
        if y_pred.shape != y.shape or mask.shape != y.shape:
            raise ValueError(
                f"{name} needs pred, label and label mask of one shape (B, C), got pred {tuple(y_pred.shape)}, "
                f"label {tuple(y.shape)} and mask {tuple(mask.shape)}."
            )
        if self.class_names is not None and y.shape[-1] != len(self.class_names):
            raise ValueError(
                f"{name} expects {len(self.class_names)} classes {self.class_names}, got pred {tuple(y_pred.shape)} "
                f"and label {tuple(y.shape)}."
            )
        return y_pred, y, mask

    def aggregate(self) -> float:
        y_pred, y, mask = self.get_buffer()
        return self.compute_observed(*observed_entries(y_pred, y, mask))

    @abstractmethod
    def compute_observed(self, scores: np.ndarray, labels: np.ndarray, observed: np.ndarray) -> float:
        """The metric of ``scores`` against ``labels`` over the ``observed`` entries, all ``(N, C)``."""
