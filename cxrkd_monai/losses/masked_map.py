"""Pixel-wise losses on the detector's per-type maps: support-weighted BCE and the mean over selected maps.

Two properties the AALS objective relies on live here:

- the hard targets of D_R are Gaussian blobs with values in ``(0, 1]``, so a positive-pixel weight must keep
  each pixel's minimiser at its target (:class:`SupportWeightedBCEWithLogitsLoss`);
- a map whose target is not known (a record-positive type without a region) is left out of the loss, and the
  loss is a mean over the pixels of the maps that count (:func:`masked_map_mean`, :class:`MaskedMapLoss`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MaskedMapLoss", "SupportWeightedBCEWithLogitsLoss", "masked_map_mean"]


def masked_map_mean(values: Tensor, mask: Tensor, source: str = "loss") -> Tensor:
    """Mean of per-element ``values`` over the maps that ``mask`` selects; 0 (with gradient) when none is.

    Args:
        values: ``(B, K, *S)`` per-pixel losses, or ``(B, K)`` per-map losses.
        mask: bool ``(B, K)``, True for the (item, type) maps that count.
        source: what produced ``values``, named in the error.

    Raises:
        ValueError: ``values`` is not ``(B, K, ...)`` (e.g. a loss built with a reduction other than ``"none"``).

    Example::

        >>> masked_map_mean(torch.tensor([[1.0, 3.0]]), torch.tensor([[True, False]]))
        tensor(1.)
    """
    if values.ndim < 2 or values.shape[:2] != mask.shape:
        raise ValueError(
            f"{source} must return one value per pixel, shape (B, K, *S) with (B, K) = {tuple(mask.shape)}, "
            f"got {tuple(values.shape)}; build it with reduction='none'."
        )
    selected = mask.view(*mask.shape, *((1,) * (values.ndim - 2))).expand_as(values)
    count = selected.sum()
    # where(), not multiplication: a non-finite value in an unselected map must not leak into the mean
    total = torch.where(selected, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum()
    return total / count.clamp(min=1)


class SupportWeightedBCEWithLogitsLoss(nn.Module):
    """BCE on logits whose weight is ``pos_weight`` on the target's support (``y > 0``) and 1 elsewhere.

    ``loss = w * BCE(x, y)`` with ``w = pos_weight`` where ``y > 0``, else 1. The weight depends only on the
    target, so for every pixel the loss is minimised at ``sigmoid(x) = y``: a Gaussian blob is learnt as
    drawn. :class:`torch.nn.BCEWithLogitsLoss` with ``pos_weight`` instead weights only the ``y * log p`` term,
    whose minimiser ``w * y / ((w - 1) * y + 1)`` inflates a blob's flank (0.135 becomes 0.61 at ``w = 10``).

    Args:
        pos_weight: weight of the support pixels, a float or a tensor broadcastable to the per-pixel loss,
            e.g. ``(K, 1, 1)`` for one weight per type of ``(B, K, H, W)`` maps; must be positive.
        reduction: ``"none"`` (per-pixel ``(B, K, *S)``), ``"mean"`` or ``"sum"``.

    Shapes:
        ``input`` (logits) and ``target`` (values in ``[0, 1]``): ``(B, K, *S)``; output as ``reduction`` says.

    Example::

        >>> loss = SupportWeightedBCEWithLogitsLoss(pos_weight=10.0, reduction="none")
        >>> loss(torch.zeros(1, 1, 2), torch.tensor([[[0.0, 0.5]]]))  # log 2 each, x10 on the support
        tensor([[[0.6931, 6.9315]]])
    """

    reductions = ("none", "mean", "sum")

    def __init__(self, pos_weight: float | Tensor = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in self.reductions:
            raise ValueError(f"reduction must be one of {self.reductions}, got {reduction!r}.")
        pos_weight = torch.as_tensor(pos_weight, dtype=torch.float32)
        # NaN passes, as in torch's losses: the finite-loss guard then stops training, naming the batch
        if bool((pos_weight <= 0).any()):
            raise ValueError(f"pos_weight must be positive, got {pos_weight.tolist()}.")
        self.register_buffer("support_weight", pos_weight)
        self.reduction = reduction

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        if input.shape != target.shape:
            raise ValueError(f"input {tuple(input.shape)} and target {tuple(target.shape)} must have one shape.")
        losses = F.binary_cross_entropy_with_logits(input, target, reduction="none")
        weight = self.support_weight.to(dtype=losses.dtype, device=losses.device)
        losses = torch.where(target > 0, losses * weight, losses)
        if self.reduction == "mean":
            return losses.mean()
        if self.reduction == "sum":
            return losses.sum()
        return losses


class MaskedMapLoss(nn.Module):
    """A per-pixel map loss averaged over the pixels of the maps that a per-map mask selects.

    ``loss = masked_map_mean(pixel_loss(input, target), mask)``: each selected map contributes all its pixels,
    an unselected map none (its target, even NaN, reaches neither the loss nor the gradient), and a batch
    without a selected map gives 0. Stage 1 of AALS uses it to leave out the map of a record-positive type that
    has no region, whose all-zero rendered target would teach a false negative.

    MONAI's :class:`~monai.engines.SupervisedTrainer` calls ``loss_function(pred, label)`` with the label of its
    ``prepare_batch``; :class:`~cxrkd_monai.engines.PrepareFractureBatch` with ``record_key`` set returns the
    pair ``(target, mask)`` as that label, so ``target`` may also be that pair.

    Args:
        pixel_loss: per-pixel loss on logits and targets returning ``(B, K, *S)``, e.g.
            :class:`SupportWeightedBCEWithLogitsLoss` with ``reduction="none"``.

    Shapes:
        ``input``: logits ``(B, K, *S)``; ``target``: ``(B, K, *S)``; ``mask``: bool ``(B, K)``, True for the
        maps that count (``None``: all). Output: a scalar.

    Example::

        loss = MaskedMapLoss(SupportWeightedBCEWithLogitsLoss(pos_weight=10.0, reduction="none"))
        value = loss(logits, target_maps, known_maps)
    """

    def __init__(self, pixel_loss: Callable[[Tensor, Tensor], Tensor]) -> None:
        super().__init__()
        self.pixel_loss = pixel_loss

    def forward(self, input: Tensor, target: Tensor | Sequence[Tensor], mask: Tensor | None = None) -> Tensor:
        if isinstance(target, (tuple, list)):
            if mask is not None or len(target) != 2:
                raise ValueError("MaskedMapLoss: give the target either as the pair (target, mask) or with mask=.")
            target, mask = target
        if mask is None:
            mask = torch.ones(input.shape[:2], dtype=torch.bool, device=input.device)
        mask = mask.to(device=input.device, dtype=torch.bool)
        if mask.shape != target.shape[:2]:
            raise ValueError(f"mask {tuple(mask.shape)} must be (B, K) = {tuple(target.shape[:2])} of the target maps.")
        selected = mask.view(*mask.shape, *((1,) * (target.ndim - 2)))
        target = torch.where(selected, target, torch.zeros((), dtype=target.dtype, device=target.device))
        return masked_map_mean(self.pixel_loss(input, target), mask, "pixel_loss")
