"""The per-class observation mask of a multi-label item, filled where the datalist has none."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.transforms import MapTransform

__all__ = ["EnsureLabelMaskd"]


class EnsureLabelMaskd(MapTransform):
    """Give every item a ``label_mask`` tensor ``(C,)`` float32, 1 where the label is observed and 0 where unknown.

    Items that have a mask (e.g. ``[1, 0, 1]`` from ``cxrkd prepare``) get it as a tensor; items without one get
    ``ones(C)``, every label observed. So a datalist mixing both collates to one ``(B, C)`` mask, which the VKD
    loss and every multi-label metric honour. Put it after :class:`~cxrkd_monai.transforms.ValidateVKDItemd`,
    which checks the mask's length against the class list.

    Args:
        num_classes: C, the length of a default mask.
        keys: the mask key (``"label_mask"``).

    Example::

        EnsureLabelMaskd(3)({"label": [0, 1, 0]})["label_mask"]             # tensor([1., 1., 1.])
        EnsureLabelMaskd(3)({"label_mask": [1, 0, 1]})["label_mask"]        # tensor([1., 0., 1.])
    """

    def __init__(self, num_classes: int, keys: str = "label_mask") -> None:
        super().__init__(keys, allow_missing_keys=True)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        self.num_classes = num_classes

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.keys:
            if key in d:
                d[key] = torch.as_tensor(d[key], dtype=torch.float32).reshape(-1)
            else:
                d[key] = torch.ones(self.num_classes, dtype=torch.float32)
        return d
