"""The findings text of a fracture prediction record, as the Deploy app's DICOM SR states it.

Pure functions of the bundle's prediction record and the ``calibration`` entry of its metadata, so that the text is
built (and tested) without the Deploy SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["fracture_findings"]

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

    Without one, a type is a finding from ``decision_threshold`` on its map maximum and every detection is listed::

        Operating point: probability >= 0.50 (no calibration in the bundle)
        Findings: none
        rib_fracture: probability 0.0931
        ...
        rib_fracture point: x 412.5, y 230.0, score 0.0931

    Args:
        record: one prediction record of the bundle's inference.
        calibration: the ``calibration`` entry of the bundle's ``metadata.json``, or ``None``.
        decision_threshold: the image-level threshold without a calibration.
    """
    classes = [key.removesuffix("_probability") for key in record if key.endswith("_probability")]
    rule = record.get("operating_point")
    if rule in (None, "default"):
        return _uncalibrated_findings(record, classes, decision_threshold)
    calibration = calibration or {}
    source = calibration.get("fitted_on", {}).get("source", "the calibration set")
    image_points = calibration.get("operating_points", {}).get(rule, {})
    lines = [
        f"Operating point: {rule} (image-level thresholds on the temperature-scaled map maximum, chosen on {source})",
        f"Findings: {', '.join(name for name in classes if record[f'positive_{name}'] == 1.0) or 'none'}",
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
    lines += _point_lines(point for point in record["detections"] if point.get("called", True))
    return "\n".join(lines)


def _uncalibrated_findings(record: Mapping[str, Any], classes: list[str], decision_threshold: float) -> str:
    positive = [name for name in classes if record[f"{name}_probability"] >= decision_threshold]
    lines = [
        f"Operating point: probability >= {decision_threshold:.2f} (no calibration in the bundle)",
        f"Findings: {', '.join(positive) or 'none'}",
    ]
    lines += [f"{name}: probability {record[f'{name}_probability']:.4f}" for name in classes]
    return "\n".join(lines + _point_lines(record["detections"]))


def _point_lines(detections) -> list[str]:
    return [
        f"{point['class']} point: x {point['x']:.1f}, y {point['y']:.1f}, score {point['score']:.4f}"
        for point in detections
    ]
