"""The VKD report's figures of merit with patient-level intervals: AUROC, ECE, uncertainty against error.

Every figure is computed over the observed labels only (``label_mask``), as the bundle's metrics compute it (the
AUROCs by the rank sum, :mod:`cxrkd_monai.metrics.rank_auroc`, which equals the metrics' scikit-learn value and is fast
enough to recompute on every resample; :func:`~cxrkd_monai.metrics.expected_calibration_error`), so the estimates
equal what ``evaluate.json`` wrote to ``metrics.json`` (``val_macro_auroc_<class>``, ``val_macro_auroc``,
``micro_auroc``, ``ece``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cxrkd_monai.metrics import expected_calibration_error
from cxrkd_monai.metrics.bootstrap import BootstrapInterval
from cxrkd_monai.metrics.rank_auroc import rank_auroc
from cxrkd_monai.report.ground_truth import RunTruth
from cxrkd_monai.report.resampling import NamedStatistic, PatientResampling, auroc_statistic
from cxrkd_monai.report.run_outputs import EvaluationRun

__all__ = ["MACRO", "MICRO", "ConfidentError", "VKDStatistics", "vkd_auroc_statistic", "vkd_statistics"]

MACRO = "Macro AUROC"
"""Name of the macro AUROC among the per-class ones."""
MICRO = "Micro AUROC"
ECE = "ECE"
ERROR_AUROC = "std ranks errors (AUROC)"


@dataclass(frozen=True)
class ConfidentError:
    """One observed (image, class) entry decided wrongly at 0.5, with the probability, its std and the label."""

    image_index: int
    class_index: int
    label: int
    probability: float
    std: float


@dataclass
class VKDStatistics:
    """Figures of merit of one VKD evaluation.

    Attributes:
        auroc: per class name, and under :data:`MACRO`, the AUROC and its interval.
        micro_auroc, ece: pooled AUROC and expected calibration error, with intervals.
        num_observed, num_positive: per class, observed labels and positives among them.
        error_auroc: how well the Monte Carlo std alone ranks wrong decisions (at 0.5) above right ones.
        mean_std_right, mean_std_wrong: mean std of right and of wrong decisions.
        confident_errors: the wrong decisions furthest from their label, most confident first.
    """

    auroc: dict[str, BootstrapInterval]
    micro_auroc: BootstrapInterval
    ece: BootstrapInterval
    num_observed: list[int]
    num_positive: list[int]
    error_auroc: BootstrapInterval
    mean_std_right: float
    mean_std_wrong: float
    confident_errors: list[ConfidentError] = field(default_factory=list)


def vkd_auroc_statistic(run: EvaluationRun, truth: RunTruth) -> NamedStatistic:
    """Per-class AUROC (keyed by class name) and the macro AUROC (:data:`MACRO`) of image indices."""
    return auroc_statistic(run.probabilities, truth.labels, truth.observed, run.class_names, MACRO)


def _pooled_auroc(scores: np.ndarray, labels: np.ndarray, observed: np.ndarray) -> float:
    """AUROC of every observed (image, class) entry pooled: ``micro_auroc``, or with the std as score, the error
    ranking."""
    return rank_auroc(labels[observed], scores[observed])


def vkd_statistics(
    run: EvaluationRun, truth: RunTruth, resampling: PatientResampling, num_bins: int = 10, num_errors: int = 8
) -> VKDStatistics:
    """AUROCs, ECE and the uncertainty figures of ``run``, each with its patient-level interval.

    Args:
        run, truth: the evaluation and its aligned ground truth.
        resampling: the bootstrap settings over the run's patients.
        num_bins: ECE bins (the bundle's ``ece`` metric uses 10).
        num_errors: how many confident errors to list.
    """
    p, y, observed = run.probabilities, truth.labels, truth.observed
    wrong = (p >= 0.5) != (y > 0.5)
    aurocs = vkd_auroc_statistic(run, truth)

    def statistic(i: np.ndarray) -> dict[str, float]:
        return {
            **aurocs(i),
            MICRO: _pooled_auroc(p[i], y[i], observed[i]),
            ECE: expected_calibration_error(p[i], y[i], num_bins, observed[i]),
            ERROR_AUROC: _pooled_auroc(run.stds[i], wrong[i].astype(float), observed[i]),
        }

    intervals = resampling.intervals(statistic)
    errors = np.argwhere(observed & wrong)
    distance = np.abs(p - np.nan_to_num(y))[observed & wrong]
    confident = [
        ConfidentError(int(i), int(k), int(y[i, k]), float(p[i, k]), float(run.stds[i, k]))
        for i, k in errors[np.argsort(-distance, kind="stable")][:num_errors]
    ]
    right_stds, wrong_stds = run.stds[observed & ~wrong], run.stds[observed & wrong]
    return VKDStatistics(
        auroc={name: intervals[name] for name in [*run.class_names, MACRO]},
        micro_auroc=intervals[MICRO],
        ece=intervals[ECE],
        num_observed=observed.sum(axis=0).astype(int).tolist(),
        num_positive=((y > 0.5) & observed).sum(axis=0).astype(int).tolist(),
        error_auroc=intervals[ERROR_AUROC],
        mean_std_right=float(right_stds.mean()) if right_stds.size else math.nan,
        mean_std_wrong=float(wrong_stds.mean()) if wrong_stds.size else math.nan,
        confident_errors=confident,
    )
