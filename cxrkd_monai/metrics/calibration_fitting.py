"""Fitting a model's calibration on labelled predictions: temperatures, then operating points on the calibrated
probabilities, and for a detector the lesion-level operating points of its detections."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cxrkd_monai.metrics.froc import FROCMetric
from cxrkd_monai.metrics.operating_points import select_lesion_operating_point, select_operating_points
from cxrkd_monai.metrics.temperature_scaling import fit_temperature
from cxrkd_monai.transforms.calibration import Calibration, fp_rate_key, temperature_scale

__all__ = ["fit_calibration"]


def fit_calibration(
    probabilities: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None,
    class_names: Sequence[str],
    sensitivity_target: float = 0.9,
    ppv_target: float = 0.5,
    source: str = "validation",
    froc: FROCMetric | None = None,
    fp_per_image_targets: Sequence[float] = (),
) -> Calibration:
    """Per-class temperatures (:func:`~cxrkd_monai.metrics.fit_temperature`), then every operating point
    (:func:`~cxrkd_monai.metrics.select_operating_points`) on the calibrated probabilities of the same images; for a
    detector also the lesion-level operating points (:func:`~cxrkd_monai.metrics.select_lesion_operating_point`)
    at each false-positive rate of ``fp_per_image_targets``, from its FROC matches on the same images.

    Args:
        probabilities: ``(N, C)`` uncalibrated image-level probabilities (a detector's: each type's map maximum).
        labels: binary ``(N, C)``.
        mask: ``(N, C)``, 1 where the label is observed, or ``None``.
        class_names: the ``C`` classes.
        sensitivity_target, ppv_target: targets of the ``"sensitivity"`` and ``"ppv"`` operating points.
        source: what the images are (``"validation"``, a datalist path), recorded in ``fitted_on``.
        froc: the detections of the ``N`` images matched to their lesions (the ``froc_metric`` of a
            :class:`~cxrkd_monai.handlers.FROCScore`), or ``None``.
        fp_per_image_targets: false positives per image of the lesion-level points; needs ``froc``.
    """
    if bool(fp_per_image_targets) != (froc is not None):
        raise ValueError("lesion-level operating points need both froc and fp_per_image_targets, or neither.")
    probabilities = torch.as_tensor(probabilities, dtype=torch.float64)
    fit = fit_temperature(probabilities, labels, mask)
    calibrated = temperature_scale(probabilities, torch.from_numpy(fit.temperature))
    points = select_operating_points(calibrated, labels, mask, class_names, sensitivity_target, ppv_target)
    lesion_points = {}
    for rate in fp_per_image_targets:
        chosen = {
            name: select_lesion_operating_point(*froc.class_scores(name), froc.num_images, float(rate))
            for name in class_names
        }
        lesion_points[fp_rate_key(rate)] = {name: None if p is None else p.as_dict() for name, p in chosen.items()}
    return Calibration(
        class_names=list(class_names),
        temperature=[float(t) for t in fit.temperature],
        operating_points={
            rule: {name: None if point is None else point.as_dict() for name, point in per_class.items()}
            for rule, per_class in points.items()
        },
        sensitivity_target=float(sensitivity_target),
        ppv_target=float(ppv_target),
        fitted_on={
            "source": source,
            "num_images": int(probabilities.shape[0]),
            "nll_uncalibrated": {name: float(v) for name, v in zip(class_names, fit.nll_before)},
            "nll_calibrated": {name: float(v) for name, v in zip(class_names, fit.nll_after)},
        },
        fp_per_image_targets=[float(rate) for rate in fp_per_image_targets],
        lesion_operating_points=lesion_points,
    )
