"""Geometry of the body frame: where the organs and bones lie, how a bone breaks, and where it all lands
on the pixel grid.

The functions take body-frame arrays (``t`` or ``a``, and ``b``) and work on scalars too. Sampling,
rendering and the fracture regions all use these shapes, so a finding is placed, drawn and boxed on
the same bone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from cxrkd_monai.phantom.model import Acquisition, ChestAnatomy, Finding

__all__ = [
    "Break",
    "Frame",
    "SIDE_SIGN",
    "anterior_rib_centre",
    "break_of",
    "chest_wall",
    "clavicle_centre",
    "clavicle_half_thickness",
    "dome",
    "heart_field",
    "lung_field",
    "lung_outline",
    "mediastinum_field",
    "posterior_rib_centre",
    "visible_lung",
]

SIDE_SIGN = {"right": -1.0, "left": 1.0}


def dome(anatomy: ChestAnatomy, side: str, t: np.ndarray) -> np.ndarray:
    """``b`` of the hemidiaphragm on ``side`` at lateral distance ``t``: highest mid-lung, lowest laterally."""
    top = anatomy.dome_tops[0 if side == "right" else 1]
    curvature = 0.12 / (anatomy.thorax_half_width - 0.35) ** 2
    return top + curvature * (t - 0.35) ** 2


def lung_outline(anatomy: ChestAnatomy):
    """Centre and radii ``(t, b)`` of the lung ellipse: its upper half rounds the apex, below it is straight."""
    medial, lateral = 0.06, anatomy.thorax_half_width
    radius_b = 0.45
    return (lateral + medial) / 2, anatomy.lung_apex + radius_b, (lateral - medial) / 2, radius_b


def lung_field(anatomy: ChestAnatomy, side: str, t: np.ndarray, b: np.ndarray, edge: float) -> np.ndarray:
    """Soft mask of one lung: the outline ellipse cut by the dome."""
    centre_t, centre_b, radius_t, radius_b = lung_outline(anatomy)
    ellipse = ((t - centre_t) / radius_t) ** 2 + (np.minimum(b - centre_b, 0.0) / radius_b) ** 2
    # Near the rim 1 - ellipse ~ 2 * distance / radius, so this edge is about `edge` wide.
    outline = expit((1.0 - ellipse) * radius_t / (2.0 * edge))
    return outline * expit((dome(anatomy, side, t) - b) / edge)


def chest_wall(anatomy: ChestAnatomy, b: np.ndarray) -> np.ndarray:
    """Lateral ``t`` of the lung outline at height ``b``, where the ribs turn forward."""
    centre_t, centre_b, radius_t, radius_b = lung_outline(anatomy)
    above = np.clip((centre_b - b) / radius_b, 0.0, 1.0)
    return centre_t + radius_t * np.sqrt(1.0 - above**2)


def heart_field(anatomy: ChestAnatomy, heart_ratio: float, a: np.ndarray, b: np.ndarray, edge: float):
    """Soft mask of the cardiac silhouette: two half ellipses, two fifths of the width on the patient's
    right and three fifths, reaching lower, on the left; its lower part hides below the diaphragm."""
    centre_a, centre_b = anatomy.heart_centre
    width = 2.0 * heart_ratio * anatomy.thorax_half_width
    on_left = a > centre_a
    radius_a = np.where(on_left, 0.6 * width, 0.4 * width)
    radius_b = anatomy.heart_half_height * (1.0 + 0.6 * (heart_ratio - anatomy.cardiothoracic_ratio))
    centre_b = np.where(on_left, centre_b + 0.03, centre_b)
    ellipse = ((a - centre_a) / radius_a) ** 2 + ((b - centre_b) / radius_b) ** 2
    return expit((1.0 - ellipse) * radius_b / (2.0 * edge))


def mediastinum_field(anatomy: ChestAnatomy, a: np.ndarray, b: np.ndarray, edge: float) -> np.ndarray:
    """Soft mask of the upper mediastinum with the aortic knob on the patient's left."""
    band = expit((0.085 - np.abs(a - 0.01)) / edge)
    knob_b = anatomy.lung_apex + 0.2
    knob = expit((1.0 - ((a - 0.1) / 0.06) ** 2 - ((b - knob_b) / 0.04) ** 2) * 0.03 / edge)
    return np.maximum(band, knob)


def visible_lung(anatomy: ChestAnatomy, heart_ratio: float, a: np.ndarray, b: np.ndarray, edge: float):
    """Lung area not hidden by the heart or mediastinum, both sides."""
    lungs = lung_field(anatomy, "right", -a, b, edge) + lung_field(anatomy, "left", a, b, edge)
    hidden = 1.0 - (1.0 - heart_field(anatomy, heart_ratio, a, b, edge)) * (
        1.0 - mediastinum_field(anatomy, a, b, edge)
    )
    return lungs * (1.0 - hidden)


def posterior_rib_centre(anatomy: ChestAnatomy, rib: int, t: np.ndarray):
    """``b`` and slope ``db/dt`` of a posterior rib: rising gently from the spine, then arching down."""
    # Intercostal spaces widen slightly down the chest.
    level = anatomy.first_rib_level + (rib - 1) * anatomy.rib_spacing * (1.0 + 0.025 * (rib - 1))
    bend = np.maximum(t - 0.35, 0.0)
    return level - 0.05 * t + 0.6 * bend**2, -0.05 + 1.2 * bend


def anterior_rib_centre(anatomy: ChestAnatomy, rib: int, t: np.ndarray):
    """``b`` and slope of an anterior rib: descending from the chest wall towards the sternum."""
    lateral_level = anatomy.first_rib_level + (rib + 0.6) * anatomy.rib_spacing
    span = anatomy.thorax_half_width - 0.18
    fraction = np.clip((anatomy.thorax_half_width - t) / span, 0.0, None)
    return lateral_level + 0.16 * fraction**1.3, -0.16 * 1.3 * fraction**0.3 / span


def clavicle_centre(anatomy: ChestAnatomy, t: np.ndarray):
    """``b`` and slope of a clavicle: an S rising from the sternal end to the shoulder."""
    phase = np.pi * np.clip((t - 0.06) / 0.5, 0.0, 1.0)
    return (
        anatomy.clavicle_level - 0.16 * (t - 0.06) + 0.03 * np.sin(phase),
        -0.16 + 0.03 * np.pi / 0.5 * np.cos(phase),
    )


def clavicle_half_thickness(anatomy: ChestAnatomy) -> float:
    return 1.25 * anatomy.rib_half_thickness


@dataclass(frozen=True)
class Break:
    """A bone break at lateral distance ``t``: a lucent gap and a step of the lateral fragment."""

    t: float
    gap: float
    depth: float
    displacement: float

    # The lateral fragment is displaced at the break and realigns over this distance along the bone.
    realign: float = 0.08

    def shift(self, t: np.ndarray, edge: float) -> np.ndarray:
        """Displacement of the bone centreline, stepping up over ``edge`` at the break."""
        after = np.maximum(t - self.t, 0.0)
        return self.displacement * expit((t - self.t) / edge) * np.exp(-after / self.realign)

    def step(self, t: np.ndarray) -> np.ndarray:
        """:meth:`shift` with a perfectly sharp step, independent of the pixel size."""
        after = np.maximum(t - self.t, 0.0)
        return self.displacement * (t >= self.t) * np.exp(-after / self.realign)

    def transmission(self, t: np.ndarray) -> np.ndarray:
        return 1.0 - self.depth * np.exp(-(((t - self.t) / self.gap) ** 2))


def break_of(finding: Finding) -> Break:
    conspicuity = finding.conspicuity
    if finding.kind == "rib_fracture":
        return Break(finding.position[0], 0.006 + 0.018 * conspicuity, 0.5 + 0.5 * conspicuity, finding.size)
    return Break(finding.position[0], 0.008 + 0.02 * conspicuity, 0.5 + 0.5 * conspicuity, finding.size)


@dataclass(frozen=True)
class Frame:
    """The body frame of one study on its pixel grid: pixel sizes, pixel-centre coordinates, inverse map."""

    acquisition: Acquisition
    width: int
    height: int

    @property
    def pixel_a(self) -> float:
        """Width of a pixel in units of ``a``."""
        return 2.0 / (self.acquisition.scale * self.width)

    @property
    def pixel_b(self) -> float:
        """Height of a pixel in units of ``b``."""
        return 1.0 / (self.acquisition.scale * self.height)

    @property
    def edge(self) -> float:
        """Width of a sharp anatomical edge: half a pixel, in units of ``b``."""
        return 0.5 * self.pixel_b

    @property
    def slope_scale(self) -> float:
        """Converts a slope ``db/da`` into rows per column."""
        return self.pixel_a / self.pixel_b

    def coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Body-frame ``(a, b)`` of every pixel centre, each of shape ``(H, W)``."""
        acquisition = self.acquisition
        x = (np.arange(self.width, dtype=np.float64) + 0.5) / self.width - acquisition.centre[0]
        y = (np.arange(self.height, dtype=np.float64) + 0.5) / self.height - acquisition.centre[1]
        cos, sin = math.cos(acquisition.rotation), math.sin(acquisition.rotation)
        u = (cos * x[None, :] + sin * y[:, None]) / acquisition.scale
        v = (-sin * x[None, :] + cos * y[:, None]) / acquisition.scale
        return (2.0 * u).astype(np.float32), (v + 0.5).astype(np.float32)

    def to_pixels(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuous pixel coordinates ``(x, y)`` of body-frame points; the inverse of :meth:`coordinates`."""
        acquisition = self.acquisition
        u, v = np.asarray(a, dtype=np.float64) / 2.0, np.asarray(b, dtype=np.float64) - 0.5
        cos, sin = math.cos(acquisition.rotation), math.sin(acquisition.rotation)
        x = (acquisition.centre[0] + acquisition.scale * (cos * u - sin * v)) * self.width
        y = (acquisition.centre[1] + acquisition.scale * (sin * u + cos * v)) * self.height
        return x, y
