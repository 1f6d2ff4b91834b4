"""Harmonise dataset labels to a bundle's class list, with explicit uncertain and blank policies.

Each item carries ``label`` (C floats) and ``label_mask`` (C values in {0, 1}). A masked entry is unknown,
and unknown everywhere: it contributes nothing to the loss (``VKDLoss``) and is left out of every metric
(AUROC, F1, ECE), so the policy that made it is the one training and evaluation both follow.

Policy (CheXpert-style raw values ``1``, ``0``, ``-1`` for uncertain, blank for not mentioned):

- ``uncertain_policy``: ``"zeros"`` (default, as the VKD authors did: -1 becomes a known 0), ``"ones"``
  (-1 becomes a known 1) or ``"ignore"`` (-1 is masked).
- ``blank_policy``: ``"zeros"`` (not mentioned is negative: the VKD authors' convention and the common
  CheXpert practice) or ``"mask"`` (not mentioned is unknown, masked in training and left out of evaluation).
  Each dataset adapter chooses its default and records the policy in the datalist (``"blank_policy"``).
- ``derive_no_finding``: the CheXpert labeler writes "No Finding" only as 1 or blank, so taken as it stands
  it is either always positive (blanks masked) or a copy of the blank pattern. With this option it is
  derived from the other classes instead, see :meth:`LabelHarmoniser.no_finding`.
- A class the dataset does not annotate at all is masked, never assumed negative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = [
    "BLANK_POLICIES",
    "CHEXPERT_CLASSES",
    "FRACTURE_CLASSES",
    "NOT_FINDINGS",
    "NO_FINDING",
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

NO_FINDING = "No Finding"
NOT_FINDINGS = ("Support Devices",)
"""Classes that are not findings: a support device alone does not rule out "No Finding" (the CheXpert labeler's
rule)."""

UNCERTAIN_POLICIES = ("zeros", "ones", "ignore")
BLANK_POLICIES = ("zeros", "mask")


class LabelHarmoniser:
    """Turn one record's raw per-class values into ``(label, label_mask)`` for ``class_names``.

    Args:
        class_names: the bundle's class list, in label order.
        uncertain_policy: what -1 becomes, one of :data:`UNCERTAIN_POLICIES`.
        blank_policy: what a blank value becomes, one of :data:`BLANK_POLICIES`.
        derive_no_finding: derive "No Finding" from the other classes (:meth:`no_finding`) rather than read it;
            only where ``class_names`` holds "No Finding".

    Input: a mapping class name -> raw value (``1``, ``0``, ``-1``, ``"1.0"``, ``""``, ``None`` or NaN);
    classes missing from the mapping are ones the dataset does not annotate.
    Output: ``(label, label_mask)``, two lists of C floats.

    Example::

        harmonise = LabelHarmoniser(["Edema", "Fracture", "Cardiomegaly"], blank_policy="mask")
        harmonise({"Edema": "-1.0", "Fracture": ""})   # ([0.0, 0.0, 0.0], [1.0, 0.0, 0.0])
        harmonise = LabelHarmoniser(["No Finding", "Edema", "Fracture"], derive_no_finding=True)
        harmonise({"No Finding": "", "Edema": "", "Fracture": "1"})   # ([0.0, 0.0, 1.0], [1.0, 1.0, 1.0])
    """

    def __init__(
        self,
        class_names: Sequence[str] = CHEXPERT_CLASSES,
        uncertain_policy: str = "zeros",
        blank_policy: str = "zeros",
        derive_no_finding: bool = False,
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
        self.derive_no_finding = bool(derive_no_finding) and NO_FINDING in self.class_names

    def __call__(self, raw: Mapping[str, object]) -> tuple[list[float], list[float]]:
        label, mask = [], []
        for name in self.class_names:
            value, known = self._harmonise(name, raw[name]) if name in raw else (0.0, 0.0)
            label.append(value)
            mask.append(known)
        if self.derive_no_finding:
            index = self.class_names.index(NO_FINDING)
            stated = raw.get(NO_FINDING)
            label[index], mask[index] = self.no_finding(label, mask, stated_normal=self._is_one(stated))
        return label, mask

    def no_finding(
        self, label: Sequence[float], mask: Sequence[float], stated_normal: bool = False
    ) -> tuple[float, float]:
        """``(value, observed)`` of "No Finding" from the harmonised findings (every class but "No Finding" and
        :data:`NOT_FINDINGS`).

        - an observed positive finding: ``(0, 1)``;
        - else the record states "No Finding" = 1, or every finding is observed (and so negative): ``(1, 1)``;
        - else (some finding unknown, none positive): ``(0, 0)``, masked.

        Under ``blank_policy="zeros"`` every finding is observed, so "No Finding" is 1 exactly when no finding is
        positive, the VKD authors' convention. Uncertain findings count as what ``uncertain_policy`` made them.
        """
        findings = [
            index for index, name in enumerate(self.class_names) if name != NO_FINDING and name not in NOT_FINDINGS
        ]
        if any(mask[i] > 0.5 and label[i] > 0.5 for i in findings):
            return 0.0, 1.0
        if stated_normal or all(mask[i] > 0.5 for i in findings):
            return 1.0, 1.0
        return 0.0, 0.0

    @staticmethod
    def _is_one(raw: object) -> bool:
        try:
            return float(raw) == 1.0
        except (TypeError, ValueError):
            return False

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
