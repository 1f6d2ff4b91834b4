"""Fracture regions: the box and centre point of every fracture, in original-image pixels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cxrkd_monai.phantom.geometry import (
    SIDE_SIGN,
    Frame,
    break_of,
    clavicle_centre,
    clavicle_half_thickness,
    posterior_rib_centre,
)
from cxrkd_monai.phantom.model import FRACTURE_CLASS_NAMES, Acquisition, ChestAnatomy, Finding

__all__ = ["FractureRegion", "fracture_regions"]

_BOX_MARGIN_PIXELS = 2.0


@dataclass(frozen=True)
class FractureRegion:
    """Where a fracture shows on the image.

    Args:
        class_name: ``"rib_fracture"`` or ``"clavicle_fracture"``.
        box: ``(x1, y1, x2, y2)`` in original-image pixels, tight around the break plus a small margin.
        point: ``(x, y)`` of the centre of the break.
    """

    class_name: str
    box: tuple[float, float, float, float]
    point: tuple[float, float]


def fracture_regions(
    anatomy: ChestAnatomy,
    acquisition: Acquisition,
    findings: Sequence[Finding],
    image_size: Sequence[int],
) -> list[FractureRegion]:
    """Box and centre point of every fracture in ``findings``, in original-image pixels.

    The box covers the bone on both sides of the break (gap and step) plus a two-pixel margin,
    clipped to the image.

    Args:
        anatomy: the patient.
        acquisition: positioning of the study.
        findings: findings of the study; non-fracture findings are ignored.
        image_size: ``(W, H)`` in pixels.
    """
    width, height = (int(s) for s in image_size)
    frame = Frame(acquisition, width, height)
    regions = []
    for finding in findings:
        if finding.kind not in FRACTURE_CLASS_NAMES:
            continue
        bone_break = break_of(finding)
        half = anatomy.rib_half_thickness if finding.kind == "rib_fracture" else clavicle_half_thickness(anatomy)
        reach = 2.0 * bone_break.gap + 0.012
        t = np.linspace(bone_break.t - reach, bone_break.t + reach, 17)
        centre, slope = _fractured_bone_centre(anatomy, finding, t)
        centre = centre + bone_break.step(t)
        half_height = half * np.sqrt(1.0 + (slope / frame.slope_scale) ** 2)
        sign = SIDE_SIGN[finding.side]
        edges = np.concatenate([centre - half_height, centre + half_height])
        xs, ys = frame.to_pixels(sign * np.concatenate([t, t]), edges)
        box = (
            max(0.0, float(xs.min()) - _BOX_MARGIN_PIXELS),
            max(0.0, float(ys.min()) - _BOX_MARGIN_PIXELS),
            min(float(width), float(xs.max()) + _BOX_MARGIN_PIXELS),
            min(float(height), float(ys.max()) + _BOX_MARGIN_PIXELS),
        )
        break_t = np.asarray(bone_break.t)
        break_b = _fractured_bone_centre(anatomy, finding, break_t)[0] + 0.5 * bone_break.displacement
        x, y = frame.to_pixels(sign * break_t, break_b)
        regions.append(FractureRegion(finding.kind, box, (float(x), float(y))))
    return regions


def _fractured_bone_centre(anatomy: ChestAnatomy, finding: Finding, t: np.ndarray):
    if finding.kind == "rib_fracture":
        return posterior_rib_centre(anatomy, finding.rib, t)
    return clavicle_centre(anatomy, t)
