"""How the report's intervals are drawn: named statistics of image indices, bootstrapped over patients.

A *named statistic* maps an int array of image indices (``(n,)``, indices may repeat) to ``{name: value}``, NaN where
a value is undefined; every value of one resample comes from one call, so an expensive step (the FROC matching, the
ranking of each class) runs once per resample. :class:`PatientResampling` hands such statistics to
:func:`~cxrkd_monai.metrics.bootstrap.bootstrap_intervals` with the run's patients as clusters, so every interval
and every paired difference of one report sees the same resampled patients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cxrkd_monai.metrics.bootstrap import BootstrapInterval, bootstrap_intervals
from cxrkd_monai.metrics.rank_auroc import per_class_rank_auroc

__all__ = ["NamedStatistic", "PatientResampling", "auroc_statistic", "mean_of_defined"]

NamedStatistic = Callable[[np.ndarray], Mapping[Hashable, float]]


def mean_of_defined(values: Sequence[float]) -> float:
    """The mean of the finite values, NaN when none is (a macro average leaving undefined classes out)."""
    defined = [v for v in values if math.isfinite(v)]
    return float(np.mean(defined)) if defined else math.nan


def auroc_statistic(
    probabilities: np.ndarray, labels: np.ndarray, observed: np.ndarray, class_names: Sequence[str], average_name: str
) -> NamedStatistic:
    """Per-class AUROC over the observed labels, keyed by class name, and their mean under ``average_name``.

    ``probabilities``, ``labels``, ``observed``: ``(N, K)``. The mean leaves undefined classes (one observed label
    value) out, as :class:`~cxrkd_monai.metrics.MultiLabelAUROCMetric` does; the values equal
    :func:`~cxrkd_monai.metrics.per_class_auroc` (:mod:`cxrkd_monai.metrics.rank_auroc`).
    """

    def statistic(index: np.ndarray) -> dict[str, float]:
        per_class = per_class_rank_auroc(probabilities[index], labels[index], observed[index])
        return {**dict(zip(class_names, per_class)), average_name: mean_of_defined(per_class)}

    return statistic


@dataclass(frozen=True)
class PatientResampling:
    """Patient-level bootstrap over a run's images: all images of a patient enter or leave a resample together.

    Attributes:
        patient_ids: ``(N,)`` the patient of each image.
        num_resamples: bootstrap resamples.
        confidence: two-sided coverage (0.95).
        seed: resampling seed; one seed gives every statistic the same resamples (paired).
    """

    patient_ids: np.ndarray
    num_resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def intervals(self, statistic: NamedStatistic) -> dict[Hashable, BootstrapInterval]:
        """Each named value on all images, with its patient-level percentile interval; values of one call share
        their resample, so differences computed inside ``statistic`` are paired."""
        return bootstrap_intervals(
            statistic, len(self.patient_ids), self.num_resamples, self.confidence, self.seed, self.patient_ids.tolist()
        )

    def subset(self, images: np.ndarray) -> PatientResampling:
        """The same settings over the images selected by the bool mask ``images`` ``(N,)``."""
        return PatientResampling(self.patient_ids[images], self.num_resamples, self.confidence, self.seed)
