"""Batch preparation for the fracture detector: the network input and the one tensor its loss or metric needs."""

from __future__ import annotations

from typing import Any

import torch
from monai.engines.utils import PrepareBatch

__all__ = ["PrepareFractureBatch"]


class PrepareFractureBatch(PrepareBatch):
    """Pick ``batchdata[image_key]`` and ``batchdata[label_key]`` and move them to ``device``.

    Trainers use ``label_key="target"`` (the rendered ``(B, K, *S)`` target maps); evaluators use
    ``label_key="image_label"`` (the ``(B, K)`` record labels that image-level AUROC compares with the map
    maxima). Ragged annotations (boxes, points) stay in ``engine.state.batch`` for handlers that need them.

    Example::

        SupervisedTrainer(..., prepare_batch=PrepareFractureBatch(label_key="target"))
    """

    def __init__(self, label_key: str = "target", image_key: str = "image") -> None:
        self.label_key = label_key
        self.image_key = image_key

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for key in (self.image_key, self.label_key):
            if key not in batchdata:
                raise KeyError(f"PrepareFractureBatch: batch has no '{key}' (keys: {sorted(batchdata)}).")
        image = batchdata[self.image_key].to(device=device, non_blocking=non_blocking, **kwargs)
        label = torch.as_tensor(batchdata[self.label_key]).to(device=device, non_blocking=non_blocking, **kwargs)
        return image, label
