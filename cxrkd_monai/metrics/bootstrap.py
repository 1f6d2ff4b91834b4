"""Percentile bootstrap confidence intervals for any image-set statistic (AUROC, F1, ECE, FROC, ...).

Images of one patient are not independent: the resampling unit is the patient when ``groups`` gives each image's
patient (a cluster bootstrap), the image otherwise. Every function here draws its resamples from
:func:`resample_indices`, so one seed gives the same resamples to every statistic and model (paired intervals).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cxrkd_monai.metrics.auroc import micro_auroc, per_class_auroc

__all__ = [
    "BootstrapInterval",
    "auroc_difference_intervals",
    "auroc_intervals",
    "auroc_summary",
    "bootstrap_interval",
    "bootstrap_intervals",
    "bootstrap_metric",
    "bootstrap_metric_difference",
    "paired_patient_bootstrap_difference",
    "patient_bootstrap_interval",
    "resample_indices",
]

ArrayLike = np.ndarray | torch.Tensor
Metric = Callable[..., float | Mapping[str, float]]


@dataclass(frozen=True)
class BootstrapInterval:
    """A statistic on the whole set and its percentile bootstrap interval.

    Attributes:
        estimate: the statistic on the original set.
        low, high: the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the statistic over the
            resamples where it is defined (NaN when it is defined on none).
        confidence: the nominal coverage, e.g. 0.95.
        num_resamples: resamples drawn.
        num_defined: resamples where the statistic was finite (an AUROC resample holding one class is not).
    """

    estimate: float
    low: float
    high: float
    confidence: float
    num_resamples: int
    num_defined: int

    def format(self, digits: int = 3) -> str:
        """``0.812 [0.741, 0.873]``, or ``n/a`` for an undefined estimate."""
        if not math.isfinite(self.estimate):
            return "n/a"
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def as_dict(self) -> dict[str, float | int]:
        """``{"estimate", "lower", "upper", "num_defined"}``, NaN where undefined (for JSON files)."""
        return {"estimate": self.estimate, "lower": self.low, "upper": self.high, "num_defined": self.num_defined}


def _check_settings(num_items: int, num_resamples: int, confidence: float) -> None:
    if num_items < 1:
        raise ValueError(f"num_items must be >= 1, got num_items={num_items}.")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got num_resamples={num_resamples}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got confidence={confidence}.")


def resample_indices(
    num_items: int, num_resamples: int, seed: int = 0, groups: Sequence[Hashable] | None = None
) -> Iterator[np.ndarray]:
    """Yields ``num_resamples`` bootstrap resamples of item indices, each an int array.

    - ``groups=None`` (items are independent): resample ``r`` is the ``r``-th
      ``numpy.random.default_rng(seed).integers(0, num_items, num_items)``.
    - ``groups`` (one cluster id per item, e.g. the patient): the ``P`` distinct ids, in order of first appearance,
      are resampled instead: the ``r``-th ``rng.integers(0, P, P)`` draws clusters with replacement, and each drawn
      cluster adds all its items, in item order. A resample then holds a varying number of items, and the images of
      one patient always enter it together. With one item per group this is the item bootstrap, draw for draw.

    Args:
        num_items: ``N``.
        num_resamples: ``R``.
        seed: seed of the generator.
        groups: ``N`` hashable cluster ids, or ``None``.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        for _ in range(num_resamples):
            yield rng.integers(0, num_items, num_items)
        return
    if len(groups) != num_items:
        raise ValueError(f"groups holds {len(groups)} cluster ids for num_items={num_items} items; give one per item.")
    members: dict[Hashable, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    clusters = [np.asarray(indices) for indices in members.values()]
    for _ in range(num_resamples):
        yield np.concatenate([clusters[c] for c in rng.integers(0, len(clusters), len(clusters))])


def bootstrap_intervals(
    statistic: Callable[[np.ndarray], Mapping[str, float]],
    num_items: int,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> dict[str, BootstrapInterval]:
    """Percentile bootstrap of several named statistics computed together on each resample.

    ``statistic`` receives an int array of item indices (``arange(num_items)`` for the estimates, a resample of
    :func:`resample_indices` otherwise; an index may repeat) and returns ``{name: value}``, NaN where a value is
    undefined; the names of the estimate are the names of the result. Each interval keeps the resamples on which its
    own value is finite.

    Args:
        statistic: maps item indices to named values.
        num_items: number of items ``N`` (images).
        num_resamples: bootstrap resamples ``R``.
        confidence: coverage of the two-sided interval, in ``(0, 1)``.
        seed: seed of the resampling generator.
        groups: ``N`` cluster ids (patients) to resample instead of items; see :func:`resample_indices`.

    Example::

        intervals = bootstrap_intervals(lambda i: {"mean": scores[i].mean(), "max": scores[i].max()}, len(scores))
    """
    _check_settings(num_items, num_resamples, confidence)
    estimates = {name: float(value) for name, value in statistic(np.arange(num_items)).items()}
    values = np.full((num_resamples, len(estimates)), math.nan)
    for r, index in enumerate(resample_indices(num_items, num_resamples, seed, groups)):
        resampled = statistic(index)
        values[r] = [float(resampled[name]) for name in estimates]
    intervals = {}
    for column, (name, estimate) in enumerate(estimates.items()):
        defined = values[np.isfinite(values[:, column]), column]
        if len(defined):
            low, high = np.percentile(defined, [50.0 * (1.0 - confidence), 50.0 * (1.0 + confidence)])
        else:
            low = high = math.nan
        intervals[name] = BootstrapInterval(estimate, float(low), float(high), confidence, num_resamples, len(defined))
    return intervals


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    num_items: int,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> BootstrapInterval:
    """Percentile bootstrap of one statistic: :func:`bootstrap_intervals` for a statistic returning a float.

    ``statistic`` maps item indices (``arange(num_items)`` for the estimate, a resample otherwise) to a float, NaN
    where it is undefined. Without ``groups``, resample ``r`` is the ``r``-th
    ``numpy.random.default_rng(seed).integers(0, num_items, num_items)``.

    Example::

        scores, labels = np.array([0.9, 0.2, 0.7, 0.4]), np.array([1, 0, 1, 0])
        interval = bootstrap_interval(lambda i: roc_auc_score(labels[i], scores[i])
                                      if len(set(labels[i])) == 2 else float("nan"), num_items=4)
    """
    return bootstrap_intervals(
        lambda index: {"value": statistic(index)}, num_items, num_resamples, confidence, seed, groups
    )["value"]


def patient_bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    patient_ids: Sequence[Hashable],
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapInterval:
    """Patient-level bootstrap of a statistic of images: all images of a patient enter or leave a resample together.

    Args:
        statistic: maps image indices (into ``patient_ids``) to a float, NaN where undefined.
        patient_ids: ``(N,)`` the patient of each image.
        num_resamples, confidence, seed: as in :func:`bootstrap_intervals`.
    """
    return bootstrap_interval(statistic, len(patient_ids), num_resamples, confidence, seed, groups=patient_ids)


def paired_patient_bootstrap_difference(
    statistic: Callable[[np.ndarray], float],
    reference: Callable[[np.ndarray], float],
    patient_ids: Sequence[Hashable],
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapInterval:
    """``statistic - reference`` on the same images, with its paired patient-level interval.

    Both statistics see every resample of patients, so errors the two models make on the same patients cancel.
    """
    return patient_bootstrap_interval(
        lambda index: statistic(index) - reference(index), patient_ids, num_resamples, confidence, seed
    )


def _as_numpy(values: ArrayLike) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def _as_named(value: float | Mapping[str, float]) -> dict[str, float]:
    return dict(value) if isinstance(value, Mapping) else {"value": float(value)}


def _unnamed(intervals: dict[str, BootstrapInterval], named: bool) -> BootstrapInterval | dict[str, BootstrapInterval]:
    return intervals if named else intervals["value"]


def bootstrap_metric(
    metric: Metric,
    scores: ArrayLike,
    labels: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    groups: Sequence[Hashable] | None = None,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapInterval | dict[str, BootstrapInterval]:
    """Bootstrap interval of ``metric(scores, labels[, mask])`` over the items (rows) of the arrays.

    Args:
        metric: called as ``metric(scores[i], labels[i])``, or ``metric(scores[i], labels[i], mask[i])`` when a
            mask is given (the argument order of :func:`~cxrkd_monai.metrics.per_class_auroc`,
            :func:`~cxrkd_monai.metrics.micro_f1`, ...); returns a float or ``{name: float}``.
        scores: ``(N, ...)`` scores or probabilities, one row per image.
        labels: ``(N, ...)`` labels.
        mask: ``(N, ...)``, 1 where a label is observed, or ``None``.
        groups: ``N`` patient ids: resample patients, not images (:func:`resample_indices`).
        num_resamples, confidence, seed: as in :func:`bootstrap_intervals`.

    Returns:
        a :class:`BootstrapInterval` for a float metric, ``{name: BootstrapInterval}`` for a named one.

    Example::

        bootstrap_metric(micro_auroc, probabilities, labels, label_mask, groups=patient_ids, seed=0)
    """
    return bootstrap_metric_difference(
        metric, scores, None, labels, mask, groups=groups, num_resamples=num_resamples, confidence=confidence, seed=seed
    )


def bootstrap_metric_difference(
    metric: Metric,
    scores: ArrayLike,
    reference_scores: ArrayLike | None,
    labels: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    groups: Sequence[Hashable] | None = None,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapInterval | dict[str, BootstrapInterval]:
    """Paired bootstrap interval of ``metric(scores) - metric(reference_scores)`` on the same items.

    Both models are scored on each resample of the same images (or patients), so the interval accounts for their
    errors falling on the same cases: it is narrower than the two separate intervals suggest when they do.
    ``reference_scores=None`` bootstraps ``metric(scores)`` alone (:func:`bootstrap_metric`).

    Args:
        metric: as in :func:`bootstrap_metric`; for a named metric each name gets its own difference.
        scores: ``(N, ...)`` scores of the model.
        reference_scores: ``(N, ...)`` scores of the reference model on the same items, in the same order.
        labels, mask, groups, num_resamples, confidence, seed: as in :func:`bootstrap_metric`.

    Example::

        difference = bootstrap_metric_difference(micro_auroc, vkd_probabilities, baseline_probabilities, labels)
        difference.low > 0  # the VKD model ranks better than the baseline beyond resampling noise
    """
    scores, labels = _as_numpy(scores), _as_numpy(labels)
    mask = None if mask is None else _as_numpy(mask)
    reference = None if reference_scores is None else _as_numpy(reference_scores)
    for name, array in (("labels", labels), ("mask", mask), ("reference_scores", reference)):
        if array is not None and len(array) != len(scores):
            raise ValueError(f"{name} has {len(array)} items and scores {len(scores)}; give one row per item.")

    def evaluate(values: np.ndarray, index: np.ndarray) -> dict[str, float]:
        arguments = (values[index], labels[index]) + (() if mask is None else (mask[index],))
        return _as_named(metric(*arguments))

    def statistic(index: np.ndarray) -> dict[str, float]:
        ours = evaluate(scores, index)
        if reference is None:
            return ours
        theirs = evaluate(reference, index)
        return {name: ours[name] - theirs[name] for name in ours}

    named = isinstance(metric(*((scores, labels) + (() if mask is None else (mask,)))), Mapping)
    intervals = bootstrap_intervals(statistic, len(scores), num_resamples, confidence, seed, groups)
    return _unnamed(intervals, named)


def auroc_summary(
    scores: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None, class_names: Sequence[str] | None = None
) -> dict[str, float]:
    """Per-class, macro and micro AUROC of multi-label scores over the observed labels.

    Args:
        scores: ``(N, C)``.
        labels: binary ``(N, C)``.
        mask: ``(N, C)``, 1 where the label is observed.
        class_names: the ``C`` names (``"0"``, ``"1"``, ... by default).

    Returns:
        ``{class name: AUROC, ..., "macro": mean of the defined per-class values, "micro": pooled AUROC}``, NaN where
        undefined (a class with one observed label value), as :class:`~cxrkd_monai.metrics.MultiLabelAUROCMetric`.
    """
    per_class = per_class_auroc(scores, labels, mask)
    names = [str(k) for k in range(len(per_class))] if class_names is None else list(class_names)
    if len(names) != len(per_class):
        raise ValueError(f"class_names has {len(names)} names for scores of {len(per_class)} classes.")
    defined = [value for value in per_class if not math.isnan(value)]
    return {
        **dict(zip(names, per_class)),
        "macro": float(np.mean(defined)) if defined else math.nan,
        "micro": micro_auroc(scores, labels, mask),
    }


def auroc_intervals(
    scores: ArrayLike,
    labels: ArrayLike,
    mask: ArrayLike | None = None,
    class_names: Sequence[str] | None = None,
    *,
    groups: Sequence[Hashable] | None = None,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, BootstrapInterval]:
    """Bootstrap intervals of the per-class, macro and micro AUROC (:func:`auroc_summary`) of ``(N, C)`` scores.

    Pass the patient of each image as ``groups`` for a patient-level interval.

    Example::

        intervals = auroc_intervals(probabilities, labels, label_mask, class_names, groups=patient_ids)
        intervals["macro"].format()  # '0.812 [0.741, 0.873]'
    """
    return bootstrap_metric(
        functools.partial(auroc_summary, class_names=class_names),
        scores,
        labels,
        mask,
        groups=groups,
        num_resamples=num_resamples,
        confidence=confidence,
        seed=seed,
    )


def auroc_difference_intervals(
    scores: ArrayLike,
    reference_scores: ArrayLike,
    labels: ArrayLike,
    mask: ArrayLike | None = None,
    class_names: Sequence[str] | None = None,
    *,
    groups: Sequence[Hashable] | None = None,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, BootstrapInterval]:
    """Paired bootstrap intervals of the per-class, macro and micro AUROC of ``scores`` minus ``reference_scores``.

    Example::

        difference = auroc_difference_intervals(vkd_probabilities, baseline_probabilities, labels, mask, names)
        difference["macro"].format()  # '0.021 [-0.004, 0.047]'
    """
    return bootstrap_metric_difference(
        functools.partial(auroc_summary, class_names=class_names),
        scores,
        reference_scores,
        labels,
        mask,
        groups=groups,
        num_resamples=num_resamples,
        confidence=confidence,
        seed=seed,
    )
