"""Batch preparation that runs the random training augmentation on the trainer's device."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import torch
from monai.engines.utils import PrepareBatch, default_prepare_batch

from cxrkd_monai.transforms.device_augmentation import BatchAugmentd

__all__ = ["AugmentingPrepareBatch"]


class AugmentingPrepareBatch(PrepareBatch):
    """Move a dictionary batch's augmented keys to ``device``, augment them there, then prepare the batch.

    The data loader then only reads and collates; ``augmentation`` (a
    :class:`~cxrkd_monai.transforms.BatchAugmentd` holding the bundle's ``train#augmentation``) draws per-item
    parameters and transforms the whole ``(B, C, *S)`` batch with a few tensor operations on the GPU. The
    augmented batch then goes through ``prepare_batch`` (MONAI's default for ``image``/``label``, or
    :class:`~cxrkd_monai.engines.PrepareFractureBatch` for the detector's ``image``/``target``), so a key that
    the augmentation transforms together with the image, such as the fracture target map, reaches the loss
    transformed the same way.

    Keys the augmentation does not list (reports, label masks, record labels) are left where they are and
    the trainer reads them from the batch as before.

    Args:
        augmentation: the batch augmentation.
        prepare_batch: the batch preparation that picks the network input and target.

    Example::

        SupervisedTrainer(..., prepare_batch=AugmentingPrepareBatch(BatchAugmentd(augmentations)))
    """

    def __init__(
        self,
        augmentation: BatchAugmentd,
        prepare_batch: Callable = default_prepare_batch,
    ) -> None:
        self.augmentation = augmentation
        self.prepare_batch = prepare_batch

    def __call__(
        self,
        batchdata: Mapping[Hashable, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> Any:
        if not isinstance(batchdata, Mapping):
            raise TypeError(f"AugmentingPrepareBatch expects a dictionary batch, got {type(batchdata).__name__}.")
        moved = dict(batchdata)
        for key in self.augmentation.keys:
            if isinstance(moved.get(key), torch.Tensor):
                moved[key] = moved[key].to(device=device, non_blocking=non_blocking)
        return self.prepare_batch(self.augmentation(moved), device, non_blocking, **kwargs)
