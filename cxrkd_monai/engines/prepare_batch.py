"""Batch preparation for the fracture detector: the network input and the one tensor its loss or metric needs."""

from __future__ import annotations

from typing import Any

import torch
from monai.engines.utils import PrepareBatch

__all__ = ["PrepareFractureBatch", "hard_target_maps"]


def hard_target_maps(
    target: torch.Tensor, record: torch.Tensor, annotated: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rendered maps as hard targets, and which of them are known, from the record and the annotations.

    Per image and fracture type (per map):

    - a type whose record is 0 has an all-zero target, on any image;
    - an annotated, record-positive type has its rendered blobs as target;
    - a record-positive type without any region has no known map (a D_P map): its all-zero rendering would
      teach a false negative, so it is not a hard target. Stage 1 leaves it out of the loss, stage 2 hands it
      to the teacher.

    Args:
        target: rendered maps ``(B, K, *S)``.
        record: record labels ``(B, K)``, 1 for a type the record says is present.
        annotated: bool ``(B, K)``, True for the types with at least one box or point.

    Returns:
        ``(hard_target, known)``: the maps ``(B, K, *S)`` with record-negative types zeroed, and bool ``(B, K)``,
        False for the record-positive types without a region.

    Raises:
        ValueError: ``record`` or ``annotated`` is not ``(B, K)`` of the maps.

    Example::

        >>> record, annotated = torch.tensor([[1, 1]]), torch.tensor([[True, False]])
        >>> hard, known = hard_target_maps(torch.ones(1, 2, 2, 2), record, annotated)
        >>> known
        tensor([[ True, False]])
    """
    if record.shape != target.shape[:2] or annotated.shape != target.shape[:2]:
        raise ValueError(
            f"record labels {tuple(record.shape)} and annotated mask {tuple(annotated.shape)} must be (B, K) = "
            f"{tuple(target.shape[:2])}, one entry per target map."
        )
    positive = record.to(target.device) > 0.5
    known = ~(positive & ~annotated.to(device=target.device, dtype=torch.bool))
    spatial = (1,) * (target.ndim - 2)
    return target * positive.view(*positive.shape, *spatial).to(target.dtype), known


class PrepareFractureBatch(PrepareBatch):
    """Pick ``batchdata[image_key]`` and ``batchdata[label_key]`` and move them to ``device``.

    Trainers use ``label_key="target"`` (the rendered ``(B, K, *S)`` target maps); evaluators use
    ``label_key="image_label"`` (the ``(B, K)`` record labels that image-level AUROC compares with the map
    maxima). Ragged annotations (boxes, points) stay in ``engine.state.batch`` for handlers that need them.

    With ``record_key`` set (stage 1 of AALS), the label is the pair ``(hard_target, known)`` of
    :func:`hard_target_maps`, built from the batch's record labels and ``annotated`` mask, for a
    :class:`~cxrkd_monai.losses.MaskedMapLoss` that leaves the unknown maps out.

    Args:
        label_key: batch key of the label (or of the rendered maps when ``record_key`` is set).
        image_key: batch key of the network input.
        record_key: batch key of the ``(B, K)`` record labels; ``None`` returns the label as it is.
        annotated_key: batch key of the bool ``(B, K)`` mask of annotated types, used with ``record_key``.

    Example::

        SupervisedTrainer(..., prepare_batch=PrepareFractureBatch(label_key="target", record_key="image_label"),
                          loss_function=MaskedMapLoss(SupportWeightedBCEWithLogitsLoss(10.0, reduction="none")))
    """

    def __init__(
        self,
        label_key: str = "target",
        image_key: str = "image",
        record_key: str | None = None,
        annotated_key: str = "annotated",
    ) -> None:
        self.label_key = label_key
        self.image_key = image_key
        self.record_key = record_key
        self.annotated_key = annotated_key

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        keys = [self.image_key, self.label_key]
        if self.record_key is not None:
            keys += [self.record_key, self.annotated_key]
        for key in keys:
            if key not in batchdata:
                raise KeyError(f"PrepareFractureBatch: batch has no '{key}' (keys: {sorted(batchdata)}).")
        image = batchdata[self.image_key].to(device=device, non_blocking=non_blocking, **kwargs)
        label = torch.as_tensor(batchdata[self.label_key]).to(device=device, non_blocking=non_blocking, **kwargs)
        if self.record_key is None:
            return image, label
        record = torch.as_tensor(batchdata[self.record_key]).to(device=label.device, non_blocking=non_blocking)
        annotated = torch.as_tensor(batchdata[self.annotated_key]).to(device=label.device, non_blocking=non_blocking)
        return image, hard_target_maps(label, record, annotated)
