"""Ignite metric of the AALS student stage: how much of the record-positive maps the sharpened targets raise."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce

__all__ = ["PseudoPositiveRate", "dp_maps"]


def dp_maps(output: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dp_target, dp_teacher, dp_mask)`` batch tensors from a trainer's output, a dict or a decollated list.

    Ignite hands a metric a tuple of per-item lists as ``(y_pred, y)`` pairs, so the three entries are stacked
    here rather than left as lists.
    """
    keys = ("dp_target", "dp_teacher", "dp_mask")
    if isinstance(output, Mapping):
        return tuple(torch.as_tensor(output[key]) for key in keys)
    return tuple(torch.stack([torch.as_tensor(item[key]) for item in output]) for key in keys)


class PseudoPositiveRate(Metric):
    """What the stage-2 targets make of the record-positive maps without regions (D_P maps), per epoch.

    A D_P map is an (image, fracture type) pair whose record is positive and which has no region, so the
    teacher labels it (see :class:`~cxrkd_monai.engines.TeacherStudentTrainer`). Three
    figures show whether sharpening acted and whether it ran away:

    - the metric value, the *pseudo-positive rate*: the fraction of D_P maps whose target peak exceeds
      ``threshold``. A teacher that collapses to all-negative pseudo-labels reads near 0;
    - ``raised_fraction_name``: the fraction of D_P pixels whose target is above the teacher's value, i.e.
      that sharpening raised (0 for ``"none"``; for AALS, the pixels above its fixed point);
    - ``positive_area_name``: the fraction of D_P pixels whose target exceeds ``threshold``. Fractures are
      small, so this must stay a small share of the image; creeping towards 1 means the pseudo-labels
      have drifted to "fracture everywhere".

    Each figure is ``nan`` in an epoch without D_P maps.

    Input (after ``output_transform``): ``(dp_target, dp_teacher, dp_mask)``, the ``(B, K, *S)`` target and
    teacher probability maps and the bool ``(B, K)`` mask of D_P maps of a batch, as
    :class:`~cxrkd_monai.engines.TeacherStudentTrainer` stores them (:func:`dp_maps` stacks them back from the
    trainer's decollated output). Only the masked maps count.

    Args:
        threshold: a target above this counts as positive (peak for the rate, pixel for the area).
        raised_fraction_name: ``engine.state.metrics`` key of the raised-pixel fraction.
        positive_area_name: ``engine.state.metrics`` key of the positive-area fraction.
        output_transform: picks ``(dp_target, dp_teacher, dp_mask)`` from ``engine.state.output``.
        device: where the counters live (the trainer's device under DDP).

    Example (bundle JSON)::

        "key_train_metric": {"pseudo_positive_rate": {
            "_target_": "cxrkd_monai.handlers.PseudoPositiveRate"}}
    """

    def __init__(
        self,
        threshold: float = 0.5,
        raised_fraction_name: str = "dp_raised_fraction",
        positive_area_name: str = "dp_positive_area",
        output_transform: Callable = dp_maps,
        device: str | torch.device = "cpu",
    ) -> None:
        self.threshold = threshold
        self.raised_fraction_name = raised_fraction_name
        self.positive_area_name = positive_area_name
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._maps = torch.tensor(0.0, device=self._device)
        self._pseudo_positive = torch.tensor(0.0, device=self._device)
        self._pixels = torch.tensor(0.0, device=self._device)
        self._raised = torch.tensor(0.0, device=self._device)
        self._positive_area = torch.tensor(0.0, device=self._device)

    @reinit__is_reduced
    def update(self, output: Sequence[torch.Tensor]) -> None:
        target, teacher, mask = (torch.as_tensor(v).detach() for v in output)
        if target.ndim < 3 or teacher.shape != target.shape or mask.shape != target.shape[:2]:
            raise ValueError(
                f"PseudoPositiveRate expects dp_target (B, K, *S), dp_teacher of the same shape and dp_mask "
                f"(B, K), got {tuple(target.shape)}, {tuple(teacher.shape)} and {tuple(mask.shape)}."
            )
        mask = mask.to(self._device).bool()
        target, teacher = target.to(self._device).flatten(2)[mask], teacher.to(self._device).flatten(2)[mask]
        self._maps += len(target)
        self._pseudo_positive += (target.amax(dim=-1) > self.threshold).sum()
        self._pixels += target.numel()
        self._raised += (target > teacher).sum()
        self._positive_area += (target > self.threshold).sum()

    @sync_all_reduce("_maps", "_pseudo_positive", "_pixels", "_raised", "_positive_area")
    def compute(self) -> dict[str, float]:
        maps, pixels = float(self._maps), float(self._pixels)
        return {
            "rate": float(self._pseudo_positive) / maps if maps else math.nan,
            "raised_fraction": float(self._raised) / pixels if pixels else math.nan,
            "positive_area": float(self._positive_area) / pixels if pixels else math.nan,
        }

    def completed(self, engine: Engine, name: str) -> None:
        result = self.compute()
        engine.state.metrics[name] = result["rate"]
        engine.state.metrics[self.raised_fraction_name] = result["raised_fraction"]
        engine.state.metrics[self.positive_area_name] = result["positive_area"]
