"""Harmonise dataset labels to a bundle's class list, with explicit uncertain and blank policies.

Each item carries ``label`` (C floats) and ``label_mask`` (C values in {0, 1}); a masked class contributes
nothing to the loss (``VKDLoss.forward(output, target, mask)``).

Policy (CheXpert-style raw values ``1``, ``0``, ``-1`` for uncertain, blank for not mentioned):

- ``uncertain_policy``: ``"zeros"`` (default, as the VKD authors did: -1 becomes a known 0), ``"ones"``
  (-1 becomes a known 1) or ``"ignore"`` (-1 is masked).
- ``blank_policy``: ``"mask"`` (default: not mentioned is unknown) or ``"zeros"`` (not mentioned is negative,
  the common CheXpert practice).
- A class the dataset does not annotate at all is masked, never assumed negative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = [
    "BLANK_POLICIES",
    "CHEXPERT_CLASSES",
    "FRACTURE_CLASSES",
    "UNCERTAIN_POLICIES",
    "LabelHarmoniser",
]

CHEXPERT_CLASSES = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
"""The 14 CheXpert labels in the VKD class order."""

FRACTURE_CLASSES = ("rib_fracture", "clavicle_fracture")
"""The AALS fracture types, in ``image_label`` order."""

UNCERTAIN_POLICIES = ("zeros", "ones", "ignore")
BLANK_POLICIES = ("mask", "zeros")


class LabelHarmoniser:
    """Turn one record's raw per-class values into ``(label, label_mask)`` for ``class_names``.

    Args:
        class_names: the bundle's class list, in label order.
        uncertain_policy: what -1 becomes, one of :data:`UNCERTAIN_POLICIES`.
        blank_policy: what a blank value becomes, one of :data:`BLANK_POLICIES`.

    Input: a mapping class name -> raw value (``1``, ``0``, ``-1``, ``"1.0"``, ``""``, ``None`` or NaN);
    classes missing from the mapping are ones the dataset does not annotate.
    Output: ``(label, label_mask)``, two lists of C floats.

    Example::

        harmonise = LabelHarmoniser(["Edema", "Fracture", "Cardiomegaly"])
        harmonise({"Edema": "-1.0", "Fracture": ""})   # ([0.0, 0.0, 0.0], [1.0, 0.0, 0.0])
    """

    def __init__(
        self,
        class_names: Sequence[str] = CHEXPERT_CLASSES,
        uncertain_policy: str = "zeros",
        blank_policy: str = "mask",
    ) -> None:
        if not class_names or len(set(class_names)) != len(class_names):
            raise ValueError(f"class_names must be a non-empty list of distinct names, got {list(class_names)}.")
        if uncertain_policy not in UNCERTAIN_POLICIES:
            raise ValueError(f"uncertain_policy must be one of {UNCERTAIN_POLICIES}, got {uncertain_policy!r}.")
        if blank_policy not in BLANK_POLICIES:
            raise ValueError(f"blank_policy must be one of {BLANK_POLICIES}, got {blank_policy!r}.")
        self.class_names = tuple(class_names)
        self.uncertain_policy = uncertain_policy
        self.blank_policy = blank_policy

    def __call__(self, raw: Mapping[str, object]) -> tuple[list[float], list[float]]:
        label, mask = [], []
        for name in self.class_names:
            value, known = self._harmonise(name, raw[name]) if name in raw else (0.0, 0.0)
            label.append(value)
            mask.append(known)
        return label, mask

    def _harmonise(self, name: str, raw: object) -> tuple[float, float]:
        if raw is None or (isinstance(raw, str) and not raw.strip()) or (isinstance(raw, float) and math.isnan(raw)):
            return (0.0, 0.0) if self.blank_policy == "mask" else (0.0, 1.0)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"Label {name!r} has value {raw!r}; expected 1, 0, -1 or blank.") from None
        if value == 1.0:
            return 1.0, 1.0
        if value == 0.0:
            return 0.0, 1.0
        if value == -1.0:
            return {"zeros": (0.0, 1.0), "ones": (1.0, 1.0), "ignore": (0.0, 0.0)}[self.uncertain_policy]
        raise ValueError(f"Label {name!r} has value {raw!r}; expected 1, 0, -1 or blank.")
