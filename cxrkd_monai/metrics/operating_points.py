"""Per-class decision thresholds (operating points) chosen on labelled scores: Youden, a sensitivity or a PPV target.

A class is called positive when its score is ``>= threshold``. The candidate thresholds of a class are its distinct
observed scores, so every operating point is one that the labelled set actually realises. Three rules:

- ``"youden"``: the threshold maximising Youden's ``J = sensitivity + specificity - 1``; among thresholds with the
  same ``J``, the highest (fewest positive calls).
- ``"sensitivity"``: the highest threshold whose sensitivity is at least ``sensitivity_target``, i.e. the best
  specificity that still finds that share of the positives. It exists whenever the class has a positive.
- ``"ppv"``: the lowest threshold whose positive predictive value is at least ``ppv_target``, i.e. the most
  positives found while that share of the positive calls is right. ``None`` when no threshold reaches the target.

A class whose observed labels hold one value only has no operating point (``None`` for every rule).

A detector also has lesion-level operating points on its FROC curve (:func:`select_lesion_operating_point`): the
lowest detection score whose false positives per image stay at or under a chosen rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from cxrkd_monai.metrics.masked import observed_entries

__all__ = [
    "OPERATING_POINT_RULES",
    "LesionOperatingPoint",
    "OperatingPoint",
    "select_lesion_operating_point",
    "select_operating_point",
    "select_operating_points",
]

OPERATING_POINT_RULES = ("youden", "sensitivity", "ppv")

# A rate is a ratio of counts; comparing it with a target such as 0.7 must not fail on its last bit.
_RATE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class OperatingPoint:
    """A decision threshold and what it achieves on the labelled set it was chosen on.

    Attributes:
        threshold: a score ``>= threshold`` is a positive call.
        sensitivity: true-positive rate at the threshold.
        specificity: true-negative rate at the threshold.
        ppv: positive predictive value at the threshold.
    """

    threshold: float
    sensitivity: float
    specificity: float
    ppv: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def select_operating_point(
    scores: np.ndarray, labels: np.ndarray, rule: str, sensitivity_target: float = 0.9, ppv_target: float = 0.5
) -> OperatingPoint | None:
    """The operating point of one class under ``rule`` (see the module docstring for the rules and their ties).

    Args:
        scores: ``(N,)`` scores of the observed items.
        labels: ``(N,)`` binary labels.
        rule: one of :data:`OPERATING_POINT_RULES`.
        sensitivity_target: for ``"sensitivity"``, in ``(0, 1]``.
        ppv_target: for ``"ppv"``, in ``(0, 1]``.

    Returns:
        the :class:`OperatingPoint`, or ``None`` when the labels hold one value or the PPV target is out of reach.

    Example::

        select_operating_point(np.array([0.9, 0.8, 0.4, 0.3]), np.array([1, 0, 1, 0]), "youden").threshold  # 0.9
    """
    if rule not in OPERATING_POINT_RULES:
        raise ValueError(f"rule must be one of {OPERATING_POINT_RULES}, got {rule!r}.")
    for name, target in (("sensitivity_target", sensitivity_target), ("ppv_target", ppv_target)):
        if not 0.0 < target <= 1.0:
            raise ValueError(f"{name} must lie in (0, 1], got {name}={target}.")
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(labels) > 0.5
    num_positive, num_negative = int(positive.sum()), int((~positive).sum())
    if num_positive == 0 or num_negative == 0:
        return None
    thresholds = np.unique(scores)[::-1]  # descending: the first calls fewest positives
    positive_scores, negative_scores = np.sort(scores[positive]), np.sort(scores[~positive])
    true_positives = num_positive - np.searchsorted(positive_scores, thresholds, side="left")
    false_positives = num_negative - np.searchsorted(negative_scores, thresholds, side="left")
    sensitivity = true_positives / num_positive
    specificity = 1.0 - false_positives / num_negative
    ppv = true_positives / (true_positives + false_positives)  # every threshold is a score: one call at least

    if rule == "youden":
        youden = sensitivity + specificity - 1.0
        chosen = int(np.flatnonzero(youden >= youden.max() - _RATE_TOLERANCE)[0])
    elif rule == "sensitivity":
        chosen = int(np.flatnonzero(sensitivity >= sensitivity_target - _RATE_TOLERANCE)[0])
    else:
        reaching = np.flatnonzero(ppv >= ppv_target - _RATE_TOLERANCE)
        if len(reaching) == 0:
            return None
        chosen = int(reaching[-1])
    return OperatingPoint(
        float(thresholds[chosen]), float(sensitivity[chosen]), float(specificity[chosen]), float(ppv[chosen])
    )


def select_operating_points(
    scores: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None = None,
    class_names: Sequence[str] | None = None,
    sensitivity_target: float = 0.9,
    ppv_target: float = 0.5,
) -> dict[str, dict[str, OperatingPoint | None]]:
    """Every rule's operating point for every class of multi-label scores, over the observed labels.

    Args:
        scores: ``(N, C)`` scores, e.g. calibrated probabilities of the validation split.
        labels: binary ``(N, C)``.
        mask: ``(N, C)``, 1 where the label is observed.
        class_names: the ``C`` names, keys of the result (``"0"``, ``"1"``, ... by default).
        sensitivity_target, ppv_target: targets of the ``"sensitivity"`` and ``"ppv"`` rules.

    Returns:
        ``{rule: {class name: OperatingPoint or None}}`` for each rule of :data:`OPERATING_POINT_RULES`.
    """
    scores, labels, observed = observed_entries(scores, labels, mask)
    names = [str(c) for c in range(scores.shape[1])] if class_names is None else list(class_names)
    if len(names) != scores.shape[1]:
        raise ValueError(f"class_names has {len(names)} names for scores of {scores.shape[1]} classes.")
    return {
        rule: {
            name: select_operating_point(
                scores[observed[:, c], c], labels[observed[:, c], c], rule, sensitivity_target, ppv_target
            )
            for c, name in enumerate(names)
        }
        for rule in OPERATING_POINT_RULES
    }


@dataclass(frozen=True)
class LesionOperatingPoint:
    """A detection-score threshold on the FROC curve and what it achieves on the set it was chosen on.

    Attributes:
        threshold: a detection with score ``>= threshold`` is called.
        sensitivity: share of the lesions found by a called detection.
        fps_per_image: called false positives per image.
    """

    threshold: float
    sensitivity: float
    fps_per_image: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def select_lesion_operating_point(
    lesion_scores: np.ndarray, false_positive_scores: np.ndarray, num_images: int, fp_per_image: float
) -> LesionOperatingPoint | None:
    """The lowest detection score whose false positives per image are at most ``fp_per_image``.

    Candidates are the distinct scores of the detections (those that found a lesion and the false positives), so the
    point is one that the set realises; detections tied at a score are called together. The lowest candidate gives
    the highest sensitivity under the rate. The inputs are one fracture type's FROC matches
    (:meth:`~cxrkd_monai.metrics.FROCMetric.class_scores`).

    Args:
        lesion_scores: ``(L,)`` per lesion, the score of the detection that found it, 0 for a missed lesion.
        false_positive_scores: ``(F,)`` scores of the detections that hit no lesion.
        num_images: images the detections come from.
        fp_per_image: the largest acceptable false positives per image, positive.

    Returns:
        the :class:`LesionOperatingPoint`, or ``None`` when there is no lesion, no detection, or even the highest
        score calls more false positives than the rate allows.

    Example::

        # 2 images; lesions found at 0.9 and 0.4, false positives at 0.8 and 0.3; at most 0.5 per image (1 in all)
        select_lesion_operating_point(np.array([0.9, 0.4]), np.array([0.8, 0.3]), 2, 0.5).threshold  # 0.4
    """
    if fp_per_image <= 0:
        raise ValueError(f"fp_per_image must be positive, got fp_per_image={fp_per_image}.")
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got num_images={num_images}.")
    lesions = np.sort(np.asarray(lesion_scores, dtype=np.float64))
    false_positives = np.sort(np.asarray(false_positive_scores, dtype=np.float64))
    found = lesions[lesions > 0]
    thresholds = np.unique(np.concatenate([found, false_positives]))
    if len(lesions) == 0 or len(thresholds) == 0:
        return None
    fps = (len(false_positives) - np.searchsorted(false_positives, thresholds, side="left")) / num_images
    allowed = np.flatnonzero(fps <= fp_per_image + _RATE_TOLERANCE)
    if len(allowed) == 0:
        return None
    chosen = int(allowed[0])
    true_positives = len(lesions) - np.searchsorted(lesions, thresholds[chosen], side="left")
    return LesionOperatingPoint(float(thresholds[chosen]), float(true_positives / len(lesions)), float(fps[chosen]))
