"""Calibrated probabilities and decisions at an operating point, from the calibration stored beside the weights.

A trained model of either bundle keeps ``calibration.json`` next to its checkpoint (``models/calibration.json``)::

    {"class_names": [...], "temperature": [T_1, ..., T_C],
     "sensitivity_target": 0.9, "ppv_target": 0.5,
     "operating_points": {"youden": {"<class>": {"threshold", "sensitivity", "specificity", "ppv"} | null, ...},
                          "sensitivity": {...}, "ppv": {...}},
     "fitted_on": {"source", "num_images", "nll_uncalibrated": {...}, "nll_calibrated": {...}}}

and, for the fracture detector, the lesion-level operating points of its detections (per type, the lowest detection
score that keeps the validation false positives at or under a rate; :mod:`~cxrkd_monai.metrics.operating_points`)::

     "fp_per_image_targets": [0.5, 1.0, 2.0],
     "lesion_operating_points": {"1": {"<type>": {"threshold", "sensitivity", "fps_per_image"} | null, ...}, ...}

Calibration is per-class temperature scaling of the model's image-level probability ``p`` (VKD: the Monte Carlo
mean; fracture: the maximum of the type's map): ``p_cal = sigmoid(logit(p) / T_c)``. It is monotone in ``p``, so
rankings and AUROC do not change. Image-level thresholds are on the calibrated probability, lesion-level ones on the
uncalibrated detection score (a map's peak value). The file is written by
:class:`~cxrkd_monai.handlers.calibration_fitter.CalibrationFitter` (training, on the validation split) and by
``cxrkd recalibrate`` (a site's own labelled data).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from monai.transforms import MapTransform

from cxrkd_monai.utils.atomic_files import json_safe

__all__ = [
    "CALIBRATION_FILENAME",
    "Calibration",
    "CalibrateProbabilitiesd",
    "OperatingPointCalls",
    "calibration_file_beside",
    "fp_rate_key",
    "temperature_scale",
]

logger = logging.getLogger(__name__)

CALIBRATION_FILENAME = "calibration.json"
# logit(p) of a probability rounded to 0 or 1 stays finite
_PROBABILITY_EPS = 1e-6


def calibration_file_beside(checkpoint: str | Path) -> str:
    """The calibration file that belongs to ``checkpoint``: ``models/model.pt`` -> ``models/calibration.json`` (the
    bundle's own model), any other ``models/<stem>.pt`` -> ``models/<stem>_calibration.json``, so that models trained
    into one folder (the fracture bundle's ``teacher.pt`` and ``model.pt``) keep their own."""
    checkpoint = Path(checkpoint)
    if checkpoint.stem == "model":
        return str(checkpoint.with_name(CALIBRATION_FILENAME))
    return str(checkpoint.with_name(f"{checkpoint.stem}_{CALIBRATION_FILENAME}"))


def fp_rate_key(fp_per_image: float) -> str:
    """The key of a lesion-level operating point in ``calibration.json``: its false positives per image, ``"%g"``
    (``0.5`` -> ``"0.5"``, ``1`` -> ``"1"``)."""
    return f"{float(fp_per_image):g}"


def temperature_scale(probabilities: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """``sigmoid(logit(p) / T)`` per class.

    Args:
        probabilities: ``(..., C)`` in [0, 1], clamped to ``[1e-6, 1 - 1e-6]`` before the logit.
        temperature: ``(C,)`` positive temperatures; ``T > 1`` softens over-confident probabilities.

    Returns:
        calibrated probabilities of the shape and dtype of ``probabilities``.
    """
    p = probabilities.clamp(_PROBABILITY_EPS, 1.0 - _PROBABILITY_EPS)
    return torch.sigmoid(torch.logit(p) / temperature.to(p))


@dataclass
class Calibration:
    """Per-class temperatures and operating points of one model (the format of ``calibration.json``).

    Attributes:
        class_names: the ``C`` classes, in output order.
        temperature: ``C`` temperatures (1.0: unchanged).
        operating_points: ``{rule: {class name: {"threshold", "sensitivity", "specificity", "ppv"} or None}}`` for
            the rules of :data:`~cxrkd_monai.metrics.operating_points.OPERATING_POINT_RULES`; thresholds on the
            calibrated probability.
        sensitivity_target, ppv_target: the targets the ``"sensitivity"`` and ``"ppv"`` points were chosen for.
        fitted_on: provenance: split or datalist, image count, NLL before and after per class.
        fp_per_image_targets: the false-positive rates the lesion-level points were chosen for (detectors only).
        lesion_operating_points: ``{fp_rate_key(rate): {class name: {"threshold", "sensitivity", "fps_per_image"}
            or None}}``, thresholds on the detection score (detectors only; empty for a classifier).
    """

    class_names: list[str]
    temperature: list[float]
    operating_points: dict[str, dict[str, dict[str, float] | None]] = field(default_factory=dict)
    sensitivity_target: float | None = None
    ppv_target: float | None = None
    fitted_on: dict[str, Any] = field(default_factory=dict)
    fp_per_image_targets: list[float] = field(default_factory=list)
    lesion_operating_points: dict[str, dict[str, dict[str, float] | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.temperature) != len(self.class_names):
            raise ValueError(
                f"calibration has {len(self.temperature)} temperatures for {len(self.class_names)} classes."
            )
        if not all(math.isfinite(t) and t > 0 for t in self.temperature):
            raise ValueError(f"temperatures must be positive and finite, got {self.temperature}.")

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Reads ``calibration.json``.

        Raises:
            ValueError: naming the file, for a file that is not a calibration.
        """
        try:
            content = json.loads(Path(path).read_text())
            return cls(**content)
        except (TypeError, ValueError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not a calibration file: {error}") from error

    def content(self) -> dict[str, Any]:
        """The stored fields in file order; the lesion-level keys only for a calibration that has them (a
        detector's)."""
        content = {
            "class_names": self.class_names,
            "temperature": self.temperature,
            "sensitivity_target": self.sensitivity_target,
            "ppv_target": self.ppv_target,
            "operating_points": self.operating_points,
            "fitted_on": self.fitted_on,
        }
        if self.lesion_operating_points:
            content["fp_per_image_targets"] = self.fp_per_image_targets
            content["lesion_operating_points"] = self.lesion_operating_points
        return content

    def to_json(self) -> str:
        """The file's text: 4-space JSON (NaN as null); refitting on the same predictions rewrites it unchanged."""
        content = self.content()
        return json.dumps(json_safe(content), indent=4) + "\n"

    def thresholds(self, rule: str) -> list[float]:
        """``C`` thresholds of ``rule``, NaN for a class without that operating point.

        Raises:
            KeyError: naming the rule and the rules the file holds.
        """
        if rule not in self.operating_points:
            raise KeyError(
                f"operating point {rule!r} is not in the calibration; it holds {list(self.operating_points)}."
            )
        return _thresholds(self.operating_points[rule], self.class_names)

    def lesion_thresholds(self, fp_per_image: float) -> list[float]:
        """``C`` detection-score thresholds of the lesion-level point at ``fp_per_image`` false positives per image,
        NaN for a class without one.

        Raises:
            KeyError: naming the rate and the rates the file holds.
        """
        key = fp_rate_key(fp_per_image)
        if key not in self.lesion_operating_points:
            raise KeyError(
                f"lesion operating point at {key} false positives per image is not in the calibration; it holds "
                f"{list(self.lesion_operating_points)}."
            )
        return _thresholds(self.lesion_operating_points[key], self.class_names)


def _thresholds(points: Mapping[str, Mapping[str, float] | None], class_names: Sequence[str]) -> list[float]:
    return [math.nan if points.get(name) is None else float(points[name]["threshold"]) for name in class_names]


class OperatingPointCalls:
    """Calibrated probabilities and calls at one operating point of a calibration file; shared by the VKD transform
    (:class:`CalibrateProbabilitiesd`) and the fracture records
    (:class:`~cxrkd_monai.handlers.FracturePredictionRecorder`).

    Without a calibration file the probabilities are passed through (temperature 1), every class's threshold is
    ``default_threshold`` and the operating point is named ``"default"``; a warning says so once.

    Args:
        calibration_file: ``calibration.json`` (:func:`calibration_file_beside` the checkpoint), or ``None``.
        operating_point: ``"youden"``, ``"sensitivity"`` or ``"ppv"``.
        default_threshold: the threshold without a calibration file.

    Example::

        calls = OperatingPointCalls("models/calibration.json", "youden")
        calibrated, threshold, positive = calls(torch.tensor([[0.7, 0.4]]))
    """

    def __init__(
        self, calibration_file: str | Path | None, operating_point: str = "youden", default_threshold: float = 0.5
    ) -> None:
        self.calibration: Calibration | None = None
        if calibration_file is not None and Path(calibration_file).is_file():
            self.calibration = Calibration.load(calibration_file)
            self.temperature = torch.tensor(self.calibration.temperature, dtype=torch.float64)
            self.threshold = torch.tensor(self.calibration.thresholds(operating_point), dtype=torch.float64)
            self.operating_point = operating_point
        else:
            logger.warning(
                "No calibration file %s: probabilities are left uncalibrated and every class is called positive from "
                "%.2f. Fit one with `cxrkd recalibrate`.", calibration_file, default_threshold,
            )  # fmt: skip
            self.temperature, self.threshold = None, torch.tensor([float(default_threshold)], dtype=torch.float64)
            self.operating_point = "default"

    def __call__(self, probabilities: torch.Tensor, name: str = "probabilities") -> tuple[torch.Tensor, ...]:
        """``(..., C)`` uncalibrated probabilities -> ``(calibrated, threshold, positive)``, each ``(..., C)`` in the
        dtype of ``probabilities``; ``positive`` is 1.0, 0.0, or NaN where the class has no threshold.

        Raises:
            ValueError: naming ``name``, when the probabilities have another number of classes than the calibration.
        """
        probabilities = torch.as_tensor(probabilities)
        if self.temperature is not None and probabilities.shape[-1] != len(self.temperature):
            raise ValueError(
                f"{name} has {probabilities.shape[-1]} classes and the calibration {len(self.temperature)}; the "
                "calibration file belongs to another model."
            )
        # thresholds were chosen among float64 calibrated probabilities: compare at that precision
        calibrated = probabilities.double()
        if self.temperature is not None:
            calibrated = temperature_scale(calibrated, self.temperature)
        threshold = self.threshold.expand(probabilities.shape[-1]).expand_as(calibrated)
        decision = torch.where(threshold.isnan(), math.nan, (calibrated >= threshold).double())
        dtype = probabilities.dtype
        return calibrated.to(dtype), threshold.to(dtype), decision.to(dtype)


class CalibrateProbabilitiesd(MapTransform):
    """Adds calibrated probabilities and the positive/negative call at an operating point to a prediction item.

    From ``item[key]`` (uncalibrated probabilities ``(C,)``, e.g. ``pred_prob`` after ``SplitDimd``) it writes:

    - ``item[calibrated_key]``: ``(C,)`` :func:`temperature_scale` of them;
    - ``item[threshold_key]``: ``(C,)`` the operating point's thresholds (NaN where a class has none);
    - ``item[decision_key]``: ``(C,)`` 1.0 positive, 0.0 negative, NaN where the class has no threshold;
    - ``item["operating_point"]``: the operating point's name.

    Without a calibration file the probabilities are passed through (temperature 1), the threshold is
    ``default_threshold`` and the operating point is named ``"default"``; a warning says so once.

    Args:
        keys: the probability key (one).
        calibration_file: ``calibration.json`` (:func:`calibration_file_beside` the checkpoint), or ``None``.
        operating_point: ``"youden"``, ``"sensitivity"`` or ``"ppv"``.
        default_threshold: the threshold without a calibration file.

    Example (bundle JSON, after ``SplitDimd``)::

        {"_target_": "cxrkd_monai.transforms.CalibrateProbabilitiesd", "keys": "pred_prob",
         "calibration_file": "$cxrkd_monai.transforms.calibration_file_beside(@ckpt_path)",
         "operating_point": "@operating_point"}
    """

    def __init__(
        self,
        keys: str | Sequence[str] = "pred_prob",
        calibration_file: str | Path | None = None,
        operating_point: str = "youden",
        default_threshold: float = 0.5,
        calibrated_key: str = "pred_calibrated",
        threshold_key: str = "pred_threshold",
        decision_key: str = "pred_positive",
    ) -> None:
        super().__init__(keys)
        if len(self.keys) != 1:
            raise ValueError(f"CalibrateProbabilitiesd takes one probability key, got keys={list(self.keys)}.")
        self.calibrated_key, self.threshold_key, self.decision_key = calibrated_key, threshold_key, decision_key
        self.calls = OperatingPointCalls(calibration_file, operating_point, default_threshold)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        item = dict(data)
        (key,) = self.keys
        calibrated, threshold, decision = self.calls(item[key], name=str(key))
        item[self.calibrated_key] = calibrated
        item[self.threshold_key] = threshold
        item[self.decision_key] = decision
        item["operating_point"] = self.calls.operating_point
        return item
