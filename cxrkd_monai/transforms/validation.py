"""Checks on datalist items that fail early and name the offending file and key."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.transforms import Transform

from cxrkd_monai.errors import InvalidItemError, require_utf8

__all__ = ["ValidateVKDItemd"]


class ValidateVKDItemd(Transform):
    """Checks one VKD datalist item before it is loaded.

    - ``label_key`` must hold ``num_classes`` values, each 0 or 1 (NaN allowed where ``label_mask`` is 0);
    - ``mask_key``, where present, must hold ``num_classes`` values, each 0 or 1;
    - with ``report_key`` set (training), the report must be a non-empty string that can be encoded as UTF-8
      (a lone surrogate raises :class:`~cxrkd_monai.errors.InvalidItemError` here, not mid-epoch in the text
      encoder).

    Errors name the item's image file and the key. Put it first in the transform chain, while ``image`` is
    still a path.

    Args:
        num_classes: expected label length C.
        label_key: key of the label vector.
        report_key: key of the report text, or ``None`` when text is not used (inference, the baseline).
        image_key: key naming the item in errors.
        mask_key: key of the per-class observation mask (1 = observed).
    """

    def __init__(
        self,
        num_classes: int,
        label_key: str = "label",
        report_key: str | None = "report",
        image_key: str = "image",
        mask_key: str = "label_mask",
    ) -> None:
        self.num_classes = num_classes
        self.label_key = label_key
        self.report_key = report_key
        self.image_key = image_key
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, object]) -> Mapping[Hashable, object]:
        source = str(data.get(self.image_key, "<no image key>"))
        if self.label_key in data:
            label = np.asarray(data[self.label_key], dtype=np.float64).reshape(-1)
            if label.size != self.num_classes:
                raise InvalidItemError(
                    f"{source}: '{self.label_key}' has {label.size} values, expected {self.num_classes} "
                    "(one per class in class_names)."
                )
            mask = np.asarray(data.get(self.mask_key, np.ones_like(label)), dtype=np.float64).reshape(-1)
            if mask.size != self.num_classes:
                raise InvalidItemError(
                    f"{source}: '{self.mask_key}' has {mask.size} values, expected {self.num_classes} "
                    f"(one per class in class_names, like '{self.label_key}')."
                )
            if not np.all(np.isin(mask, (0.0, 1.0))):
                raise InvalidItemError(f"{source}: '{self.mask_key}' must hold 0/1 values, got {mask.tolist()}.")
            observed = label[mask > 0.5]
            if not np.all(np.isin(observed, (0.0, 1.0))):
                raise InvalidItemError(f"{source}: '{self.label_key}' must hold 0/1 values, got {label.tolist()}.")
        if self.report_key is not None:
            report = data.get(self.report_key)
            if not isinstance(report, str) or not report.strip():
                raise InvalidItemError(
                    f"{source}: '{self.report_key}' is missing or empty; VKD training needs the report."
                )
            require_utf8(report, f"{source}: '{self.report_key}'")
        return data
