"""The findings of a prediction record at its operating point, as the Deploy apps' DICOM SRs state them.

Pure functions of the bundle's prediction record and the ``calibration`` entry of its metadata, so that the calls,
points and text are built (and tested) without the Deploy SDK: :func:`vkd_calls` and :func:`fracture_calls` give
the coded SR's findings, :func:`fracture_findings` the text of the fracture app's text SR.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FindingCall", "called_detections", "fracture_calls", "fracture_findings", "is_calibrated", "vkd_calls"]


@dataclass(frozen=True)
class FindingCall:
    """One finding of a prediction record, called at the record's operating point.

    Attributes:
        name: the bundle's class name (``"Cardiomegaly"``, ``"rib_fracture"``).
        probability: the image-level probability the model gave (before any temperature scaling).
        present: the call at the operating point; ``None`` where the calibration has no point for the class.
        points: ``(x, y, score)`` of each detection at or above the point-level operating point, in original-image
            pixels: x is the column, y the row, pixel ``i`` spans ``[i, i + 1)`` (the DICOM SCOORD convention).
    """

    name: str
    probability: float
    present: bool | None
    points: tuple[tuple[float, float, float], ...] = ()

    @classmethod
    def from_dict(cls, call: Mapping[str, Any]) -> FindingCall:
        """The call back from its ``dataclasses.asdict`` form, as stored in the app's JSON result."""
        return cls(call["name"], call["probability"], call["present"], tuple(map(tuple, call["points"])))


def is_calibrated(record: Mapping[str, Any]) -> bool:
    """Whether the record was called at an operating point of a stored calibration (not the default threshold)."""
    return record.get("operating_point") not in (None, "default")


def _call(record: Mapping[str, Any], name: str, probability: float, decision_threshold: float) -> bool | None:
    """The record's own call for a calibrated record, else ``probability >= decision_threshold``."""
    if not is_calibrated(record):
        return probability >= decision_threshold
    positive = record[f"positive_{name}"]
    return None if positive is None else positive == 1.0


def vkd_calls(record: Mapping[str, Any], decision_threshold: float = 0.5) -> list[FindingCall]:
    """One :class:`FindingCall` per class of a VKD prediction record (``prob_<class>`` keys), in record order.

    Args:
        record: one prediction record of the VKD bundle's inference.
        decision_threshold: the threshold on ``prob_<class>`` when the record carries no calibrated calls.
    """
    names = [key.removeprefix("prob_") for key in record if key.startswith("prob_")]
    return [
        FindingCall(name, record[f"prob_{name}"], _call(record, name, record[f"prob_{name}"], decision_threshold))
        for name in names
    ]


def called_detections(record: Mapping[str, Any], decision_threshold: float = 0.5) -> list[dict[str, Any]]:
    """The detections of a fracture record at its point-level operating point.

    A calibrated record marks them (``"called"``, a score threshold per type at the chosen false positives per
    image); without a calibration a point is called from the same ``decision_threshold`` as its type, so that no
    map peak below the operating point is reported.
    """
    if is_calibrated(record):
        return [point for point in record["detections"] if point.get("called", True)]
    return [point for point in record["detections"] if point["score"] >= decision_threshold]


def fracture_calls(record: Mapping[str, Any], decision_threshold: float = 0.5) -> list[FindingCall]:
    """One :class:`FindingCall` per fracture type of a record (``<type>_probability`` keys), with its called points.

    Args:
        record: one prediction record of the fracture bundle's inference.
        decision_threshold: the threshold on the map maximum and on the point scores when the record carries no
            calibrated calls.
    """
    names = [key.removesuffix("_probability") for key in record if key.endswith("_probability")]
    points = called_detections(record, decision_threshold)
    return [
        FindingCall(
            name,
            record[f"{name}_probability"],
            _call(record, name, record[f"{name}_probability"], decision_threshold),
            tuple((point["x"], point["y"], point["score"]) for point in points if point["class"] == name),
        )
        for name in names
    ]


# what an image-level operating point achieved where it was chosen, as the text names it
_IMAGE_RATES = {"sensitivity": "sensitivity", "specificity": "specificity", "ppv": "PPV"}


def _rates(point: Mapping[str, float] | None, names: Mapping[str, str]) -> str:
    """``"sensitivity 0.85, specificity 0.80"``: what an operating point achieved where it was chosen."""
    if point is None:
        return ""
    return ", ".join(f"{label} {point[key]:.2f}" for key, label in names.items() if point.get(key) is not None)


def fracture_findings(
    record: Mapping[str, Any], calibration: Mapping[str, Any] | None = None, decision_threshold: float = 0.5
) -> str:
    """The findings text of one fracture prediction record (points in original-image pixels, x = column, y = row).

    With a calibrated bundle (the record of :class:`~cxrkd_monai.handlers.FracturePredictionRecorder` carries
    ``operating_point``, ``positive_<type>``, ``lesion_threshold_<type>`` and called detections; ``calibration`` is
    the bundle metadata's ``calibration`` entry), the text names both operating points, their thresholds and what
    they achieved on the images they were chosen on::

        Operating point: youden (image-level thresholds on the temperature-scaled map maximum, chosen on validation)
        Findings: rib_fracture
        rib_fracture: positive (probability 0.0931, calibrated 0.6120, threshold 0.5310; on validation sensitivity
        0.85, specificity 0.80, PPV 0.62)
        clavicle_fracture: negative (...)
        Points: detections called at 1 false positives per image on validation (a score threshold per type)
        rib_fracture points: score >= 0.0731 (on validation lesion sensitivity 0.85, 1.00 false positives per image)
        rib_fracture point: x 412.5, y 230.0, score 0.0931

    Without one, a type is a finding from ``decision_threshold`` on its map maximum and the points listed are the
    detections scoring at least ``decision_threshold`` (:func:`called_detections`)::

        Operating point: probability >= 0.50 (no calibration in the bundle)
        Findings: rib_fracture
        rib_fracture: probability 0.7931
        clavicle_fracture: probability 0.0210
        rib_fracture point: x 412.5, y 230.0, score 0.7931

    Args:
        record: one prediction record of the bundle's inference.
        calibration: the ``calibration`` entry of the bundle's ``metadata.json``, or ``None``.
        decision_threshold: the image-level threshold without a calibration.
    """
    calls = fracture_calls(record, decision_threshold)
    if not is_calibrated(record):
        return _uncalibrated_findings(calls, decision_threshold)
    classes = [call.name for call in calls]
    rule = record["operating_point"]
    calibration = calibration or {}
    source = calibration.get("fitted_on", {}).get("source", "the calibration set")
    image_points = calibration.get("operating_points", {}).get(rule, {})
    lines = [
        f"Operating point: {rule} (image-level thresholds on the temperature-scaled map maximum, chosen on {source})",
        f"Findings: {', '.join(call.name for call in calls if call.present) or 'none'}",
    ]
    for name in classes:
        threshold, call = record[f"threshold_{name}"], record[f"positive_{name}"]
        if call is None:
            lines.append(f"{name}: no operating point (probability {record[f'{name}_probability']:.4f})")
            continue
        achieved = _rates(image_points.get(name), _IMAGE_RATES)
        lines.append(
            f"{name}: {'positive' if call == 1.0 else 'negative'} (probability {record[f'{name}_probability']:.4f}, "
            f"calibrated {record[f'calibrated_{name}']:.4f}, threshold {threshold:.4f}"
            + (f"; on {source} {achieved})" if achieved else ")")
        )
    rate = record["lesion_operating_point"]
    lesion_points = calibration.get("lesion_operating_points", {}).get(f"{float(rate):g}", {})
    lines.append(
        f"Points: detections called at {float(rate):g} false positives per image on {source} (a score threshold per "
        "type)"
    )
    for name in classes:
        threshold = record[f"lesion_threshold_{name}"]
        if threshold is None:
            lines.append(f"{name} points: none called (no lesion-level operating point)")
            continue
        achieved = _rates(lesion_points.get(name), {"sensitivity": "lesion sensitivity"})
        point = lesion_points.get(name)
        if point is not None:
            achieved += f", {point['fps_per_image']:.2f} false positives per image"
        lines.append(f"{name} points: score >= {threshold:.4f}" + (f" (on {source} {achieved})" if achieved else ""))
    return "\n".join(lines + _point_lines(calls))


def _uncalibrated_findings(calls: Sequence[FindingCall], decision_threshold: float) -> str:
    lines = [
        f"Operating point: probability >= {decision_threshold:.2f} (no calibration in the bundle)",
        f"Findings: {', '.join(call.name for call in calls if call.present) or 'none'}",
    ]
    lines += [f"{call.name}: probability {call.probability:.4f}" for call in calls]
    return "\n".join(lines + _point_lines(calls))


def _point_lines(calls: Sequence[FindingCall]) -> list[str]:
    return [
        f"{call.name} point: x {x:.1f}, y {y:.1f}, score {score:.4f}" for call in calls for x, y, score in call.points
    ]
