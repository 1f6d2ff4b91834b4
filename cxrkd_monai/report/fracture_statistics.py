"""The fracture report's figures of merit with patient-level intervals: AUROC per type, FROC and its operating points.

The image-level AUROC is the bundle's (:func:`~cxrkd_monai.metrics.per_class_auroc`, here by the equal and faster
rank sum of :mod:`cxrkd_monai.metrics.rank_auroc`) of the ``<type>_probability`` columns against ``image_label``;
the FROC is :class:`~cxrkd_monai.metrics.froc.FROCMetric` on the detections the run wrote, against the datalist's
boxes and points in original pixels with each image's hit radius, as the bundle's ``FROCScore`` scores it. The
estimates therefore equal ``metrics.json`` (``val_auroc_<type>``, ``val_auroc``, ``val_froc_<type>``, ``val_froc``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cxrkd_monai.metrics.bootstrap import BootstrapInterval
from cxrkd_monai.metrics.froc import FROCMetric
from cxrkd_monai.report.ground_truth import RunTruth, TestImageTruth
from cxrkd_monai.report.resampling import NamedStatistic, PatientResampling, auroc_statistic, mean_of_defined
from cxrkd_monai.report.run_outputs import EvaluationRun
from cxrkd_monai.report.settings import ReportSettings

__all__ = [
    "MEAN_AUROC",
    "MEAN_FROC",
    "FractureStatistics",
    "auroc_name",
    "fracture_auroc_statistic",
    "fracture_statistic",
    "fracture_statistics",
    "froc_name",
    "image_errors",
]

MEAN_AUROC = "Mean AUROC"
MEAN_FROC = "Mean FROC"


def auroc_name(fracture_type: str) -> str:
    """Name of a type's AUROC among the statistics (``"AUROC rib_fracture"``)."""
    return f"AUROC {fracture_type}"


def froc_name(fracture_type: str) -> str:
    """Name of a type's FROC score among the statistics (``"FROC rib_fracture"``)."""
    return f"FROC {fracture_type}"


def _sensitivity_name(fracture_type: str, rate: float) -> str:
    return f"Sensitivity {fracture_type} at {rate:g} FP/image"


@dataclass
class FractureStatistics:
    """Figures of merit of one fracture evaluation.

    Attributes:
        auroc: per type name, and under :data:`MEAN_AUROC`, the image-level AUROC and its interval.
        froc: per type, and under :data:`MEAN_FROC` (types with lesions), the FROC score and its interval.
        sensitivity_at: per type, per false-positive rate of the score, the sensitivity and its interval.
        num_positive: per type, images whose ``image_label`` is positive.
        num_lesions: per type, lesions (boxes, or points where an image has no box of the type).
    """

    auroc: dict[str, BootstrapInterval]
    froc: dict[str, BootstrapInterval]
    sensitivity_at: dict[str, dict[float, BootstrapInterval]]
    num_positive: list[int]
    num_lesions: list[int]


def fracture_auroc_statistic(run: EvaluationRun, truth: RunTruth) -> NamedStatistic:
    """Image-level AUROC per type (keyed by type name) and their mean (:data:`MEAN_AUROC`) of image indices."""
    return auroc_statistic(run.probabilities, truth.labels, truth.observed, run.class_names, MEAN_AUROC)


def fracture_statistic(
    run: EvaluationRun, truth: RunTruth, settings: ReportSettings, with_sensitivities: bool = True
) -> NamedStatistic:
    """AUROC (:func:`auroc_name`, :data:`MEAN_AUROC`), FROC score (:func:`froc_name`, :data:`MEAN_FROC`) and, with
    ``with_sensitivities``, the sensitivity at each operating point, of image indices; one FROC matching per call."""
    names = run.class_names
    aurocs = fracture_auroc_statistic(run, truth)

    def new_metric() -> FROCMetric:
        return FROCMetric(len(names), names, fp_per_image=settings.fp_per_image, point_radius=settings.point_radius)

    # each image's detections are matched to its lesions once; a resample only adds up the matches of its images
    matches = [
        new_metric().match(detections, lesion.boxes, lesion.points, min_hit_radius=lesion.min_hit_radius)
        for detections, lesion in zip(run.detections, truth.lesions)
    ]

    def statistic(index: np.ndarray) -> dict[str, float]:
        metric = new_metric()
        for i in index:
            metric.add_matches(matches[i])
        froc = metric.compute()
        auroc = aurocs(index)
        values = {auroc_name(n): auroc[n] for n in names}
        values[MEAN_AUROC] = auroc[MEAN_AUROC]
        values |= {froc_name(n): froc[n]["score"] for n in names}
        values[MEAN_FROC] = mean_of_defined([froc[n]["score"] for n in names])
        if with_sensitivities:
            values |= {
                _sensitivity_name(n, rate): froc[n]["sensitivity_at"][rate]
                for n in names
                for rate in settings.fp_per_image
            }
        return values

    return statistic


def fracture_statistics(
    run: EvaluationRun, truth: RunTruth, settings: ReportSettings, resampling: PatientResampling
) -> FractureStatistics:
    """Per-type and mean AUROC and FROC, and the sensitivity at each operating point, with patient-level intervals."""
    intervals = resampling.intervals(fracture_statistic(run, truth, settings))
    names = run.class_names
    return FractureStatistics(
        auroc={**{n: intervals[auroc_name(n)] for n in names}, MEAN_AUROC: intervals[MEAN_AUROC]},
        froc={**{n: intervals[froc_name(n)] for n in names}, MEAN_FROC: intervals[MEAN_FROC]},
        sensitivity_at={
            n: {rate: intervals[_sensitivity_name(n, rate)] for rate in settings.fp_per_image} for n in names
        },
        num_positive=((truth.labels > 0.5) & truth.observed).sum(axis=0).astype(int).tolist(),
        num_lesions=[sum(_lesion_count(lesion, k) for lesion in truth.lesions) for k in range(len(names))],
    )


def _lesion_count(lesion: TestImageTruth, class_index: int) -> int:
    """Lesions of one type in one image, as FROCMetric counts them: its boxes, or its points where it has no box."""
    boxes = int((lesion.boxes[:, -1] == class_index).sum())
    return boxes if boxes else int((lesion.points[:, -1] == class_index).sum())


def image_errors(run: EvaluationRun, truth: RunTruth) -> np.ndarray:
    """``(N,)`` mean absolute gap between each image's type probabilities and its observed ``image_label``.

    0 is a perfect image-level call; it ranks the best and worst images of the overlays.
    """
    gap = np.where(truth.observed, np.abs(run.probabilities - np.nan_to_num(truth.labels)), np.nan)
    with np.errstate(invalid="ignore"):
        return np.array([np.nanmean(row) if np.isfinite(row).any() else math.nan for row in gap])
