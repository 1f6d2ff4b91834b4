"""Synthetic frontal chest radiographs with reports, labels and fracture boxes, for demos and tests only.

Every image is drawn from a simple geometric model of a posteroanterior chest film: soft tissue,
dark lungs with vessel markings, mediastinum and heart, diaphragm domes, posterior and anterior
ribs, clavicles, spine, scapulae, humeral heads and film noise, with per-patient and per-study
variation (body size, position, rotation, exposure). Seven findings can be added, each with a
controllable prevalence and a random conspicuity, so that both obvious and subtle cases exist.
Every study gets a templated free-text report, its ground-truth labels, and a box and a point for
each fracture.

This is synthetic data. It exists so that the two bundles can be run end to end, and their code
tested, without patient data. The anatomy and the findings are crude geometric shapes, and no
number obtained on these images supports any clinical or scientific claim about a method.

Conventions:
    - ``image_size`` is ``(W, H)``; pixel arrays are ``(H, W)`` (row-major, as Pillow stores them).
    - The view is posteroanterior: the patient's right is on the image's left.
    - Box and point coordinates are continuous original-image pixels, ``x`` the column and ``y`` the
      row, where pixel ``i`` spans ``[i, i + 1)``.
    - Anatomy lives in a body frame where ``a`` runs across the image from -1 (image left) to 1 and
      ``b`` down it from 0 to 1. Each study's :class:`Acquisition` maps that frame onto pixels. A
      finding's ``position`` is ``(t, b)`` with ``t`` the distance from the midline towards the
      finding's side, so ``a = -t`` on the patient's right and ``a = t`` on the left.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter, gaussian_filter1d
from scipy.special import expit

from cxrkd_monai.data.splits import split_patients

__all__ = [
    "DEFAULT_PREVALENCE",
    "FINDING_KINDS",
    "FRACTURE_CLASS_NAMES",
    "SUBTLE_CONSPICUITY",
    "VKD_CLASS_NAMES",
    "Acquisition",
    "ChestAnatomy",
    "Finding",
    "FractureRegion",
    "fracture_regions",
    "generate_phantom_dataset",
    "render_chest_radiograph",
    "sample_acquisition",
    "sample_anatomy",
    "sample_findings",
    "write_report",
]

FINDING_KINDS = (
    "cardiomegaly",
    "pleural_effusion",
    "lung_opacity",
    "nodule",
    "pneumothorax",
    "rib_fracture",
    "clavicle_fracture",
)
DEFAULT_PREVALENCE = {
    "cardiomegaly": 0.25,
    "pleural_effusion": 0.2,
    "lung_opacity": 0.25,
    "nodule": 0.2,
    "pneumothorax": 0.15,
    "rib_fracture": 0.3,
    "clavicle_fracture": 0.15,
}
VKD_CLASS_NAMES = ("Cardiomegaly", "Pleural Effusion", "Lung Opacity", "Lung Lesion", "Pneumothorax", "Fracture")
FRACTURE_CLASS_NAMES = ("rib_fracture", "clavicle_fracture")
# Which finding kinds make each VKD class positive, in the order of VKD_CLASS_NAMES.
_VKD_CLASS_KINDS = (
    ("cardiomegaly",),
    ("pleural_effusion",),
    ("lung_opacity",),
    ("nodule",),
    ("pneumothorax",),
    ("rib_fracture", "clavicle_fracture"),
)
SUBTLE_CONSPICUITY = 0.35
"""Findings below this conspicuity are subtle: drawn faintly and reported with a hedge."""

_MIN_IMAGE_SIDE = 64
_SIDE_SIGN = {"right": -1.0, "left": 1.0}
_LUNG_AIR = 0.3
_BOX_MARGIN_PIXELS = 2.0
_SPLIT_NAMES = ("training", "validation", "test")
# Keeps the draw of the D_R images apart from every patient's stream ([seed, patient number, ...]).
_SUBSET_STREAM = 1_000_033


@dataclass(frozen=True)
class ChestAnatomy:
    """One patient's body in the body frame ``(a, b)``; it stays the same across the patient's studies.

    Args:
        thorax_half_width: lateral extent of each lung, in units of ``a``.
        lung_apex: ``b`` of the lung apices.
        dome_tops: ``b`` of the top of the (right, left) hemidiaphragm.
        heart_centre: ``(a, b)`` of the cardiac ellipse.
        heart_half_height: vertical semi-axis of the cardiac ellipse, in units of ``b``.
        cardiothoracic_ratio: heart width over thorax width in the absence of cardiomegaly.
        first_rib_level: ``b`` where the first posterior rib leaves the spine.
        rib_spacing: distance in ``b`` between consecutive posterior ribs.
        rib_half_thickness: half the width of a rib, in units of ``b``.
        clavicle_level: ``b`` of the medial clavicle ends.
        body_half_width: half width of the soft-tissue outline, in units of ``a``.
        soft_tissue_density: attenuation of the soft tissue at the midline.
        vessel_seed: seed of the lung vessel pattern.
    """

    thorax_half_width: float
    lung_apex: float
    dome_tops: tuple[float, float]
    heart_centre: tuple[float, float]
    heart_half_height: float
    cardiothoracic_ratio: float
    first_rib_level: float
    rib_spacing: float
    rib_half_thickness: float
    clavicle_level: float
    body_half_width: float
    soft_tissue_density: float
    vessel_seed: int


@dataclass(frozen=True)
class Acquisition:
    """How one study was taken: the placement of the body frame on the image and the exposure.

    Args:
        scale: size of the body frame relative to the image (1 fills it).
        centre: image position of the body-frame centre, as fractions of ``(W, H)``.
        rotation: rotation of the body frame on the image, in radians (positive turns it clockwise).
        exposure: steepness of the film curve ``1 - exp(-exposure * density)``, which compresses the
            dense mediastinum and abdomen the way film does.
        offset: brightness added after the film curve.
        gamma: exponent applied last.
        noise_std: standard deviation of the film noise, in units of full scale.
        noise_seed: seed of the film noise and of the fine lung texture.
    """

    scale: float
    centre: tuple[float, float]
    rotation: float
    exposure: float
    offset: float
    gamma: float
    noise_std: float
    noise_seed: int


@dataclass(frozen=True)
class Finding:
    """One abnormality of one study.

    ``size`` means, by ``kind``:

    - ``cardiomegaly``: the cardiothoracic ratio;
    - ``pleural_effusion``: height of the fluid at the lateral chest wall, in units of ``b``;
    - ``lung_opacity``, ``nodule``: radius, in units of ``b``;
    - ``pneumothorax``: fraction by which the lung has collapsed towards the hilum;
    - ``rib_fracture``, ``clavicle_fracture``: displacement of the lateral fragment, in units of ``b``
      (positive is downwards).

    Args:
        kind: one of :data:`FINDING_KINDS`.
        conspicuity: how visible the finding is, in ``(0, 1]``; below :data:`SUBTLE_CONSPICUITY` it
            is subtle.
        side: ``"right"``, ``"left"`` or (effusion only) ``"bilateral"``; empty for cardiomegaly.
        position: ``(t, b)`` of the centre (opacity, nodule) or of the break (fractures).
        size: see above.
        rib: posterior rib number (1 is the uppermost) of a rib fracture, else 0.
        texture_seed: seed of the patchy texture of an opacity.
    """

    kind: str
    conspicuity: float
    side: str = ""
    position: tuple[float, float] = (0.0, 0.0)
    size: float = 0.0
    rib: int = 0
    texture_seed: int = 0

    @property
    def is_subtle(self) -> bool:
        """Drawn faintly and reported with a hedge."""
        return self.conspicuity < SUBTLE_CONSPICUITY


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


def sample_anatomy(rng: np.random.Generator) -> ChestAnatomy:
    """Draw one patient's body."""
    right_dome = rng.uniform(0.66, 0.72)
    rib_spacing = rng.uniform(0.056, 0.062)
    return ChestAnatomy(
        thorax_half_width=rng.uniform(0.74, 0.84),
        lung_apex=rng.uniform(0.08, 0.12),
        dome_tops=(right_dome, right_dome + rng.uniform(0.01, 0.04)),
        heart_centre=(rng.uniform(0.01, 0.05), right_dome + rng.uniform(0.0, 0.03)),
        heart_half_height=rng.uniform(0.18, 0.22),
        cardiothoracic_ratio=rng.uniform(0.38, 0.47),
        first_rib_level=rng.uniform(0.12, 0.15),
        rib_spacing=rib_spacing,
        rib_half_thickness=rng.uniform(0.36, 0.42) * rib_spacing / 2,
        clavicle_level=rng.uniform(0.15, 0.19),
        body_half_width=rng.uniform(0.92, 1.02),
        soft_tissue_density=rng.uniform(0.5, 0.6),
        vessel_seed=int(rng.integers(2**31)),
    )


def sample_acquisition(rng: np.random.Generator) -> Acquisition:
    """Draw the positioning and exposure of one study."""
    return Acquisition(
        scale=rng.uniform(0.9, 1.02),
        centre=(0.5 + rng.uniform(-0.03, 0.03), 0.5 + rng.uniform(-0.03, 0.03)),
        rotation=math.radians(rng.uniform(-4.0, 4.0)),
        exposure=rng.uniform(1.6, 2.2),
        offset=rng.uniform(-0.04, 0.04),
        gamma=rng.uniform(1.0, 1.35),
        noise_std=rng.uniform(0.008, 0.02),
        noise_seed=int(rng.integers(2**31)),
    )


def sample_findings(
    rng: np.random.Generator, anatomy: ChestAnatomy, prevalence: Mapping[str, float] | None = None
) -> tuple[Finding, ...]:
    """Draw the findings of one study; each kind is present with probability ``prevalence[kind]``.

    Presence is drawn first and each kind's parameters come from their own child generator, so
    changing one prevalence changes which findings are present but not how the others look.

    Args:
        rng: generator of this study.
        anatomy: the patient (places opacities and nodules inside the lungs).
        prevalence: probability of each kind, overriding :data:`DEFAULT_PREVALENCE`.

    Returns:
        The findings in the order of :data:`FINDING_KINDS`; a rib fracture of several ribs gives one
        finding per rib.
    """
    rates = _resolve_prevalence(prevalence)
    presence = rng.random(len(FINDING_KINDS))
    kind_rngs = dict(zip(FINDING_KINDS, rng.spawn(len(FINDING_KINDS))))
    present = {kind: bool(u < rates[kind]) for kind, u in zip(FINDING_KINDS, presence)}
    findings: list[Finding] = []

    heart_ratio = anatomy.cardiothoracic_ratio
    if present["cardiomegaly"]:
        r = kind_rngs["cardiomegaly"]
        conspicuity = r.uniform(0.15, 1.0)
        heart_ratio = 0.52 + 0.13 * conspicuity
        findings.append(Finding("cardiomegaly", conspicuity, size=heart_ratio))
    if present["pleural_effusion"]:
        r = kind_rngs["pleural_effusion"]
        conspicuity = r.uniform(0.15, 1.0)
        side = str(r.choice(["right", "left", "bilateral"], p=[0.4, 0.4, 0.2]))
        findings.append(Finding("pleural_effusion", conspicuity, side, size=0.04 + 0.3 * conspicuity))
    for kind, radius_range in (("lung_opacity", (0.08, 0.14)), ("nodule", (0.018, 0.035))):
        if present[kind]:
            r = kind_rngs[kind]
            conspicuity = r.uniform(0.15, 1.0)
            side = str(r.choice(["right", "left"]))
            radius = r.uniform(*radius_range)
            position = _point_inside_lung(r, anatomy, heart_ratio, side, margin=min(radius, 0.05))
            seed = int(r.integers(2**31))
            findings.append(Finding(kind, conspicuity, side, position, radius, texture_seed=seed))
    if present["pneumothorax"]:
        r = kind_rngs["pneumothorax"]
        conspicuity = r.uniform(0.15, 1.0)
        side = str(r.choice(["right", "left"]))
        findings.append(Finding("pneumothorax", conspicuity, side, size=0.05 + 0.3 * conspicuity))
    if present["rib_fracture"]:
        findings.extend(_sample_rib_fractures(kind_rngs["rib_fracture"], anatomy))
    if present["clavicle_fracture"]:
        r = kind_rngs["clavicle_fracture"]
        conspicuity = r.uniform(0.15, 1.0)
        side = str(r.choice(["right", "left"]))
        t = r.uniform(0.2, 0.42)
        direction = 1.0 if r.random() < 0.75 else -1.0
        displacement = direction * (0.25 + 1.25 * conspicuity) * 2 * _clavicle_half_thickness(anatomy)
        centre, _ = _clavicle_centre(anatomy, t)
        findings.append(Finding("clavicle_fracture", conspicuity, side, (t, float(centre)), displacement))
    return tuple(findings)


def _sample_rib_fractures(rng: np.random.Generator, anatomy: ChestAnatomy) -> list[Finding]:
    # Several fractured ribs are usually neighbours on one side, in a line along the chest wall.
    conspicuity = rng.uniform(0.15, 1.0)
    side = str(rng.choice(["right", "left"]))
    count = int(rng.choice([1, 2, 3], p=[0.65, 0.25, 0.1]))
    first_rib = int(rng.integers(3, 10 - count))
    t_line = rng.uniform(0.4, 0.7)
    fractures = []
    for rib in range(first_rib, first_rib + count):
        t = float(np.clip(t_line + rng.uniform(-0.04, 0.04), 0.36, 0.74))
        direction = 1.0 if rng.random() < 0.5 else -1.0
        displacement = direction * (0.25 + 1.25 * conspicuity) * 2 * anatomy.rib_half_thickness
        centre, _ = _posterior_rib_centre(anatomy, rib, t)
        fractures.append(Finding("rib_fracture", conspicuity, side, (t, float(centre)), displacement, rib=rib))
    return fractures


def _point_inside_lung(
    rng: np.random.Generator, anatomy: ChestAnatomy, heart_ratio: float, side: str, margin: float
) -> tuple[float, float]:
    """A ``(t, b)`` well inside the visible lung on ``side`` (not behind the heart or mediastinum)."""
    sign = _SIDE_SIGN[side]
    # Almost every draw lands inside within a few tries; the last draw stands if none does.
    for _ in range(200):
        t = rng.uniform(0.25, anatomy.thorax_half_width - margin)
        b = rng.uniform(anatomy.lung_apex + margin, anatomy.dome_tops[1] + 0.08)
        ring = [(t + dt, b + db) for dt, db in ((0, 0), (margin, 0), (-margin, 0), (0, margin), (0, -margin))]
        ts, bs = np.array(ring).T
        if np.min(_visible_lung(anatomy, heart_ratio, sign * ts, bs, edge=0.004)) > 0.9:
            break
    return float(t), float(b)


def _resolve_prevalence(prevalence: Mapping[str, float] | None) -> dict[str, float]:
    rates = dict(DEFAULT_PREVALENCE)
    for kind, value in (prevalence or {}).items():
        if kind not in DEFAULT_PREVALENCE:
            raise ValueError(f"prevalence has unknown key {kind!r}; known keys are {list(FINDING_KINDS)}.")
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"prevalence[{kind!r}] must be in [0, 1], got {value!r}.")
        rates[kind] = float(value)
    return rates


# Anatomy. Every function below takes body-frame arrays (t or a, and b) and works on scalars too.


def _dome(anatomy: ChestAnatomy, side: str, t: np.ndarray) -> np.ndarray:
    """``b`` of the hemidiaphragm on ``side`` at lateral distance ``t``: highest mid-lung, lowest laterally."""
    top = anatomy.dome_tops[0 if side == "right" else 1]
    curvature = 0.12 / (anatomy.thorax_half_width - 0.35) ** 2
    return top + curvature * (t - 0.35) ** 2


def _lung_outline(anatomy: ChestAnatomy):
    """Centre and radii ``(t, b)`` of the lung ellipse: its upper half rounds the apex, below it is straight."""
    medial, lateral = 0.06, anatomy.thorax_half_width
    radius_b = 0.45
    return (lateral + medial) / 2, anatomy.lung_apex + radius_b, (lateral - medial) / 2, radius_b


def _lung_field(anatomy: ChestAnatomy, side: str, t: np.ndarray, b: np.ndarray, edge: float) -> np.ndarray:
    """Soft mask of one lung: the outline ellipse cut by the dome."""
    centre_t, centre_b, radius_t, radius_b = _lung_outline(anatomy)
    ellipse = ((t - centre_t) / radius_t) ** 2 + (np.minimum(b - centre_b, 0.0) / radius_b) ** 2
    # Near the rim 1 - ellipse ~ 2 * distance / radius, so this edge is about `edge` wide.
    outline = expit((1.0 - ellipse) * radius_t / (2.0 * edge))
    return outline * expit((_dome(anatomy, side, t) - b) / edge)


def _chest_wall(anatomy: ChestAnatomy, b: np.ndarray) -> np.ndarray:
    """Lateral ``t`` of the lung outline at height ``b``, where the ribs turn forward."""
    centre_t, centre_b, radius_t, radius_b = _lung_outline(anatomy)
    above = np.clip((centre_b - b) / radius_b, 0.0, 1.0)
    return centre_t + radius_t * np.sqrt(1.0 - above**2)


def _heart_field(anatomy: ChestAnatomy, heart_ratio: float, a: np.ndarray, b: np.ndarray, edge: float):
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


def _mediastinum_field(anatomy: ChestAnatomy, a: np.ndarray, b: np.ndarray, edge: float) -> np.ndarray:
    """Soft mask of the upper mediastinum with the aortic knob on the patient's left."""
    band = expit((0.085 - np.abs(a - 0.01)) / edge)
    knob_b = anatomy.lung_apex + 0.2
    knob = expit((1.0 - ((a - 0.1) / 0.06) ** 2 - ((b - knob_b) / 0.04) ** 2) * 0.03 / edge)
    return np.maximum(band, knob)


def _visible_lung(anatomy: ChestAnatomy, heart_ratio: float, a: np.ndarray, b: np.ndarray, edge: float):
    """Lung area not hidden by the heart or mediastinum, both sides."""
    lungs = _lung_field(anatomy, "right", -a, b, edge) + _lung_field(anatomy, "left", a, b, edge)
    hidden = 1.0 - (1.0 - _heart_field(anatomy, heart_ratio, a, b, edge)) * (
        1.0 - _mediastinum_field(anatomy, a, b, edge)
    )
    return lungs * (1.0 - hidden)


def _posterior_rib_centre(anatomy: ChestAnatomy, rib: int, t: np.ndarray):
    """``b`` and slope ``db/dt`` of a posterior rib: rising gently from the spine, then arching down."""
    # Intercostal spaces widen slightly down the chest.
    level = anatomy.first_rib_level + (rib - 1) * anatomy.rib_spacing * (1.0 + 0.025 * (rib - 1))
    bend = np.maximum(t - 0.35, 0.0)
    return level - 0.05 * t + 0.6 * bend**2, -0.05 + 1.2 * bend


def _anterior_rib_centre(anatomy: ChestAnatomy, rib: int, t: np.ndarray):
    """``b`` and slope of an anterior rib: descending from the chest wall towards the sternum."""
    lateral_level = anatomy.first_rib_level + (rib + 0.6) * anatomy.rib_spacing
    span = anatomy.thorax_half_width - 0.18
    fraction = np.clip((anatomy.thorax_half_width - t) / span, 0.0, None)
    return lateral_level + 0.16 * fraction**1.3, -0.16 * 1.3 * fraction**0.3 / span


def _clavicle_centre(anatomy: ChestAnatomy, t: np.ndarray):
    """``b`` and slope of a clavicle: an S rising from the sternal end to the shoulder."""
    phase = np.pi * np.clip((t - 0.06) / 0.5, 0.0, 1.0)
    return (
        anatomy.clavicle_level - 0.16 * (t - 0.06) + 0.03 * np.sin(phase),
        -0.16 + 0.03 * np.pi / 0.5 * np.cos(phase),
    )


def _clavicle_half_thickness(anatomy: ChestAnatomy) -> float:
    return 1.25 * anatomy.rib_half_thickness


@dataclass(frozen=True)
class _Break:
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


def _fractured_bone_centre(anatomy: ChestAnatomy, finding: Finding, t: np.ndarray):
    if finding.kind == "rib_fracture":
        return _posterior_rib_centre(anatomy, finding.rib, t)
    return _clavicle_centre(anatomy, t)


def _break_of(finding: Finding) -> _Break:
    conspicuity = finding.conspicuity
    if finding.kind == "rib_fracture":
        return _Break(finding.position[0], 0.006 + 0.018 * conspicuity, 0.5 + 0.5 * conspicuity, finding.size)
    return _Break(finding.position[0], 0.008 + 0.02 * conspicuity, 0.5 + 0.5 * conspicuity, finding.size)


@dataclass(frozen=True)
class _Frame:
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


def _add_bone_band(
    bone: np.ndarray,
    weight: float,
    frame: _Frame,
    t: np.ndarray,
    b: np.ndarray,
    centre_of: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    half_thickness: float,
    extent: tuple[float, np.ndarray],
    bounds: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    breaks: Sequence[_Break] = (),
) -> None:
    """Add one rib or clavicle to ``bone``: a band with brighter cortical edges, faded at its ends, possibly
    broken. Only the rows and columns the band can reach are computed, which keeps rendering fast;
    ``bounds`` holds the least and greatest ``b`` of each row and ``t`` of each column."""
    start, ends = extent
    end = float(ends.max())
    centres = centre_of(np.linspace(start, end, 64))[0]
    reach = 2.0 * half_thickness + sum(abs(bone_break.displacement) for bone_break in breaks) + 4.0 * frame.pixel_b
    row_least, row_greatest, column_least, column_greatest = bounds
    rows = np.flatnonzero((row_greatest >= centres.min() - reach) & (row_least <= centres.max() + reach))
    columns = np.flatnonzero((column_greatest >= start - 0.05) & (column_least <= end + 0.08))
    if rows.size == 0 or columns.size == 0:
        return
    window = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))
    t, b = t[window], b[window]
    centre, slope = centre_of(t)
    transmission = np.ones_like(t)
    for bone_break in breaks:
        centre = centre + bone_break.shift(t, frame.pixel_a)
        transmission = transmission * bone_break.transmission(t)
    distance = (b - centre) / np.sqrt(1.0 + (slope / frame.slope_scale) ** 2)
    inside = expit((half_thickness - np.abs(distance)) / frame.edge)
    cortex = 0.55 + 0.45 * np.minimum((distance / half_thickness) ** 2, 1.0)
    fade = expit((t - start) / 0.01) * expit((ends[window] - t) / 0.015)
    bone[window] += weight * inside * cortex * fade * transmission


def render_chest_radiograph(
    anatomy: ChestAnatomy,
    acquisition: Acquisition,
    findings: Sequence[Finding],
    image_size: Sequence[int],
) -> np.ndarray:
    """Draw one posteroanterior chest radiograph.

    The same ``anatomy`` and ``acquisition`` with different ``findings`` give images that differ
    only where the findings are, which makes a study and its finding-free twin comparable pixel by
    pixel.

    Args:
        anatomy: the patient.
        acquisition: positioning, exposure and noise seed of the study.
        findings: the abnormalities to draw (any number, any order).
        image_size: ``(W, H)`` in pixels.

    Returns:
        ``uint8`` array of shape ``(H, W)``; 0 is black (air), 255 white (bone).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> anatomy = sample_anatomy(rng)
        >>> image = render_chest_radiograph(anatomy, sample_acquisition(rng), (), (128, 112))
        >>> image.shape, image.dtype
        ((112, 128), dtype('uint8'))
    """
    width, height = (int(s) for s in image_size)
    frame = _Frame(acquisition, width, height)
    a, b = frame.coordinates()
    edge = frame.edge
    noise_rng = np.random.default_rng(acquisition.noise_seed)
    by_kind: dict[str, list[Finding]] = {kind: [] for kind in FINDING_KINDS}
    for finding in findings:
        if finding.kind not in by_kind:
            raise ValueError(f"findings hold unknown kind {finding.kind!r}; known kinds are {list(FINDING_KINDS)}.")
        by_kind[finding.kind].append(finding)

    heart_ratio = by_kind["cardiomegaly"][0].size if by_kind["cardiomegaly"] else anatomy.cardiothoracic_ratio
    neck = 0.32
    outline = neck + (anatomy.body_half_width - neck) * expit((b - anatomy.clavicle_level + 0.06) / 0.035)
    body = expit((outline - np.abs(a)) / edge)
    density = anatomy.soft_tissue_density * (1.0 - 0.6 * (a / anatomy.body_half_width) ** 2) * body
    # Breast and pectoral soft tissue thicken the lower lateral chest.
    density += 0.06 * body * expit((b - 0.55) / 0.08) * np.minimum(np.abs(a) / anatomy.body_half_width, 1.0)
    dome_under = np.where(a < 0, _dome(anatomy, "right", -a), _dome(anatomy, "left", a))
    density += 0.1 * body * expit((b - dome_under) / (4 * edge))
    gastric_bubble = ((a - 0.4) / 0.07) ** 2 + ((b - anatomy.dome_tops[1] - 0.05) / 0.025) ** 2
    density -= 0.1 * expit((1.0 - gastric_bubble) * 0.025 / edge)

    heart = _heart_field(anatomy, heart_ratio, a, b, edge)
    uncovered = (1.0 - heart) * (1.0 - _mediastinum_field(anatomy, a, b, edge))
    density += 0.02 * heart
    trachea = expit((0.028 - np.abs(a - 0.005)) / edge) * expit((anatomy.lung_apex + 0.22 - b) / 0.02)
    density -= 0.1 * trachea * body

    fine_texture = gaussian_filter(noise_rng.standard_normal((height, width)), 0.008 / frame.pixel_b)
    fine_texture = (fine_texture / (fine_texture.std() + 1e-8)).astype(np.float32)
    for side, sign in _SIDE_SIGN.items():
        t = sign * a
        lung = _lung_field(anatomy, side, t, b, edge) * uncovered
        aerated = lung
        pneumothoraces = [f for f in by_kind["pneumothorax"] if f.side == side]
        for pneumothorax in pneumothoraces:
            aerated = _add_pneumothorax(density, anatomy, side, t, b, edge, lung, pneumothorax)
        vessels = _vessel_pattern(anatomy, side, a, b, frame, fine_texture)
        density += -_LUNG_AIR * lung + 0.15 * vessels * aerated
        for effusion in by_kind["pleural_effusion"]:
            if effusion.side in (side, "bilateral"):
                density += _effusion_fluid(anatomy, side, t, b, effusion) * lung * (_LUNG_AIR + 0.03)
        for opacity in by_kind["lung_opacity"]:
            if opacity.side == side:
                density += _opacity_patch(opacity, t, b, frame) * lung * _LUNG_AIR * (0.35 + 0.6 * opacity.conspicuity)
        for nodule in by_kind["nodule"]:
            if nodule.side == side:
                density += _nodule_sphere(nodule, t, b, frame) * (0.12 + 0.3 * nodule.conspicuity)
    density += body * _bones(anatomy, frame, a, b, by_kind)

    film = -np.expm1(-acquisition.exposure * density) / -math.expm1(-acquisition.exposure * 1.2)
    image = np.clip(film + acquisition.offset, 0.0, 1.0) ** acquisition.gamma
    image = gaussian_filter(image, 0.5)
    image = image + acquisition.noise_std * noise_rng.standard_normal((height, width))
    image = image + 0.5 * acquisition.noise_std * gaussian_filter(noise_rng.standard_normal((height, width)), 1.0)
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _add_pneumothorax(
    density: np.ndarray,
    anatomy: ChestAnatomy,
    side: str,
    t: np.ndarray,
    b: np.ndarray,
    edge: float,
    lung: np.ndarray,
    pneumothorax: Finding,
) -> np.ndarray:
    """Darken the pleural space around a lung collapsed towards the hilum, draw the visceral pleural
    line, and return the part of the lung that still holds vessels."""
    anchor_t, anchor_b = 0.2, anatomy.dome_tops[0] - 0.05
    keep = 1.0 - pneumothorax.size
    collapsed = _lung_field(anatomy, side, anchor_t + (t - anchor_t) / keep, anchor_b + (b - anchor_b) / keep, edge)
    pleural_space = lung * (1.0 - collapsed)
    density -= (0.05 + 0.05 * pneumothorax.conspicuity) * pleural_space
    # 4 m (1 - m) of a soft mask peaks on its rim: a thin line along the collapsed lung's edge.
    density += (0.05 + 0.1 * pneumothorax.conspicuity) * 4.0 * collapsed * (1.0 - collapsed) * lung
    return lung * collapsed


def _vessel_pattern(
    anatomy: ChestAnatomy, side: str, a: np.ndarray, b: np.ndarray, frame: _Frame, fine_texture: np.ndarray
) -> np.ndarray:
    """Vessel markings: streaks radiating from the hilum, fading towards the periphery."""
    sign = _SIDE_SIGN[side]
    dx = (a - sign * 0.2) * frame.slope_scale
    dy = b - (anatomy.dome_tops[0] - 0.24)
    radius = np.sqrt(dx**2 + dy**2)
    bins = 256
    profile_rng = np.random.default_rng([anatomy.vessel_seed, 0 if side == "right" else 1])
    profile = gaussian_filter1d(profile_rng.random(bins), 1.2, mode="wrap")
    profile = (profile - profile.min()) / (profile.max() - profile.min() + 1e-8)
    angle_bin = ((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * bins).astype(np.int64) % bins
    streaks = profile[angle_bin] ** 3 * (0.6 + 0.4 * fine_texture)
    hilum = np.exp(-((radius / 0.05) ** 2))
    return streaks * np.exp(-radius / 0.2) + 0.8 * hilum


def _effusion_fluid(anatomy: ChestAnatomy, side: str, t: np.ndarray, b: np.ndarray, effusion: Finding):
    """Fluid at the lung base under a meniscus that climbs the lateral chest wall."""
    lateral = anatomy.thorax_half_width
    angle_level = _dome(anatomy, side, lateral)
    climb = 0.5 + 0.5 * np.clip((t - 0.1) / (lateral - 0.1), 0.0, 1.0) ** 2
    top = angle_level - effusion.size * climb
    # Small effusions keep a soft upper edge, large ones a sharper meniscus.
    return expit((b - top) / (0.02 - 0.012 * effusion.conspicuity))


def _opacity_patch(opacity: Finding, t: np.ndarray, b: np.ndarray, frame: _Frame) -> np.ndarray:
    """Hazy, patchy consolidation: a broad blob modulated by smooth random texture."""
    centre_t, centre_b = opacity.position
    distance2 = (((t - centre_t) * frame.slope_scale) ** 2 + (b - centre_b) ** 2) / opacity.size**2
    texture_rng = np.random.default_rng(opacity.texture_seed)
    texture = gaussian_filter(texture_rng.standard_normal(t.shape), 0.02 / frame.pixel_b)
    texture = texture / (texture.std() + 1e-8)
    return np.exp(-distance2) * np.clip(0.75 + 0.35 * texture, 0.0, 1.5)


def _nodule_sphere(nodule: Finding, t: np.ndarray, b: np.ndarray, frame: _Frame) -> np.ndarray:
    """Projected thickness of a sphere: a round opacity densest at its centre."""
    centre_t, centre_b = nodule.position
    distance = np.sqrt(((t - centre_t) * frame.slope_scale) ** 2 + (b - centre_b) ** 2)
    chord = np.sqrt(np.clip(1.0 - (distance / nodule.size) ** 2, 0.0, 1.0))
    return chord * expit((nodule.size - distance) / frame.edge)


def _bones(
    anatomy: ChestAnatomy, frame: _Frame, a: np.ndarray, b: np.ndarray, by_kind: Mapping[str, list[Finding]]
) -> np.ndarray:
    """Spine, ribs, clavicles, scapulae and humeral heads, with the fractures of this study."""
    edge = frame.edge
    vertebra = np.mod(b - anatomy.first_rib_level, anatomy.rib_spacing) / anatomy.rib_spacing
    disc = np.exp(-(((vertebra - 0.5) / 0.12) ** 2))
    bone = 0.07 * expit((0.055 - np.abs(a)) / edge) * (1.0 - 0.35 * disc)
    lateral = anatomy.thorax_half_width
    rib_ends = _chest_wall(anatomy, b) + 0.05
    row_bounds = (b.min(axis=1), b.max(axis=1))
    for side, sign in _SIDE_SIGN.items():
        t = sign * a
        bounds = (*row_bounds, t.min(axis=0), t.max(axis=0))
        rib_breaks: dict[int, list[_Break]] = {}
        for fracture in by_kind["rib_fracture"]:
            if fracture.side == side:
                rib_breaks.setdefault(fracture.rib, []).append(_break_of(fracture))
        for rib in range(1, 11):
            _add_bone_band(
                bone, 0.13, frame, t, b, partial(_posterior_rib_centre, anatomy, rib), anatomy.rib_half_thickness,
                (0.06, rib_ends), bounds, rib_breaks.get(rib, ()),
            )
        for rib in range(1, 7):
            _add_bone_band(
                bone, 0.05, frame, t, b, partial(_anterior_rib_centre, anatomy, rib), 0.8 * anatomy.rib_half_thickness,
                (0.2, rib_ends), bounds,
            )
        clavicle_breaks = [_break_of(f) for f in by_kind["clavicle_fracture"] if f.side == side]
        _add_bone_band(
            bone, 0.3, frame, t, b, partial(_clavicle_centre, anatomy), _clavicle_half_thickness(anatomy),
            (0.07, np.full_like(b, 0.58)), bounds, clavicle_breaks,
        )
        medial_border = lateral - 0.16 - 0.1 * (anatomy.lung_apex + 0.33 - b) / 0.31
        scapula = expit((t - medial_border) / (2 * edge)) * expit((anatomy.lung_apex + 0.33 - b) / 0.02)
        bone += 0.04 * scapula * expit((b - anatomy.clavicle_level + 0.02) / 0.02)
        head = ((t - lateral - 0.15) * frame.slope_scale) ** 2 + (b - anatomy.clavicle_level + 0.01) ** 2
        bone += 0.15 * expit((0.06 - np.sqrt(head)) / edge)
    return bone


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
    frame = _Frame(acquisition, width, height)
    regions = []
    for finding in findings:
        if finding.kind not in FRACTURE_CLASS_NAMES:
            continue
        bone_break = _break_of(finding)
        half = anatomy.rib_half_thickness if finding.kind == "rib_fracture" else _clavicle_half_thickness(anatomy)
        reach = 2.0 * bone_break.gap + 0.012
        t = np.linspace(bone_break.t - reach, bone_break.t + reach, 17)
        centre, slope = _fractured_bone_centre(anatomy, finding, t)
        centre = centre + bone_break.step(t)
        half_height = half * np.sqrt(1.0 + (slope / frame.slope_scale) ** 2)
        sign = _SIDE_SIGN[finding.side]
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


# Reports. Positive sentences never contain a negation word, so that a finding stated and a finding
# denied can be told apart by simple keyword rules; subtle findings are always hedged.

_NEGATIVE_SENTENCES = {
    "cardiomegaly": (
        "Heart size is normal.",
        "The cardiac silhouette is within normal limits.",
        "Normal heart size.",
        "The heart is not enlarged.",
    ),
    "pleural_effusion": ("No pleural effusion.", "No effusion.", "The costophrenic angles are sharp."),
    "lung_opacity": ("No focal consolidation.", "No focal airspace opacity.", "No focal airspace disease."),
    "nodule": ("No suspicious pulmonary nodules.", "No nodules or masses are identified."),
    "pneumothorax": ("No pneumothorax.", "There is no pneumothorax.", "No evidence of pneumothorax."),
    "fracture": (
        "No acute osseous abnormality.",
        "No displaced fractures are identified.",
        "The bony structures are intact.",
    ),
    "rib_fracture": ("No displaced rib fracture.", "The ribs are intact."),
    "clavicle_fracture": ("The clavicles are intact.", "No clavicle fracture."),
}
_NORMAL_SENTENCES = (
    "The mediastinal contours are unremarkable.",
    "Trachea is midline.",
    "Normal cardiomediastinal contours.",
    "The hila are unremarkable.",
)
_DEIDENTIFIED_SENTENCES = (
    "Comparison: XXXX.",
    "Comparison is made to the prior radiograph dated XXXX.",
    "XXXX-year-old patient, PA view of the chest.",
)
_DEIDENTIFIED_CLOSINGS = ("Findings were discussed with Dr. XXXX on XXXX.", "Results called to XXXX at XXXX.")
_NORMAL_IMPRESSIONS = (
    "No acute cardiopulmonary abnormality.",
    "No acute cardiopulmonary process.",
    "Normal chest radiograph.",
)


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _zone(b: float) -> str:
    return "upper" if b < 0.34 else "mid" if b < 0.52 else "lower"


def _size_word(value: float, small: float, moderate: float) -> str:
    return "small" if value < small else "moderate" if value < moderate else "large"


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _describe(kind: str, group: Sequence[Finding], rng: np.random.Generator) -> tuple[str, str]:
    """A FINDINGS sentence and an IMPRESSION phrase for one finding (or one side's rib fractures)."""
    finding = group[0]
    subtle = finding.is_subtle
    side = finding.side
    if kind == "cardiomegaly":
        degree = "mildly" if finding.size < 0.56 else "moderately" if finding.size < 0.61 else "markedly"
        if subtle:
            return _pick(rng, (
                "The cardiac silhouette is possibly mildly enlarged.",
                "Possible mild cardiomegaly.",
                "Borderline enlarged cardiac silhouette, likely mild cardiomegaly.",
                "Mild cardiomegaly cannot be excluded.",
            )), "Possible mild cardiomegaly."
        return _pick(rng, (
            f"The cardiac silhouette is {degree} enlarged.",
            f"{_capitalise(degree[:-2])} cardiomegaly.",
            "Enlarged cardiac silhouette.",
            f"The heart is {degree} enlarged.",
        )), "Cardiomegaly."
    if kind == "pleural_effusion":
        noun = "pleural effusions" if side == "bilateral" else "pleural effusion"
        angles = "costophrenic angles" if side == "bilateral" else "costophrenic angle"
        size = _size_word(finding.size, 0.08, 0.16)
        if subtle:
            return _pick(rng, (
                f"Blunting of the {side} {angles}, possibly small {noun}.",
                f"Possible small {side} {noun}.",
                f"Small {side} {noun} cannot be excluded.",
            )), f"Possible small {side} {noun}."
        return _pick(rng, (
            f"{_capitalise(size)} {side} {noun}.",
            f"{_capitalise(size)} {side} {noun} with a meniscus, blunting the {angles}.",
            f"{_capitalise(side)} {noun}, {size} in size.",
        )), f"{_capitalise(size)} {side} {noun}."
    if kind == "lung_opacity":
        zone = _zone(finding.position[1])
        if subtle:
            return _pick(rng, (
                f"Faint hazy opacity in the {side} {zone} lung zone, possibly early consolidation.",
                f"Subtle {side} {zone} zone opacity; pneumonia cannot be excluded.",
                f"Ill-defined opacity in the {side} {zone} lung, likely atelectasis or early infection.",
            )), f"Possible {side} {zone} zone consolidation."
        return _pick(rng, (
            f"Patchy airspace opacity in the {side} {zone} lung zone, consistent with consolidation.",
            f"Consolidation in the {side} {zone} lung.",
            f"Focal airspace consolidation in the {side} {zone} zone.",
        )), f"{_capitalise(side)} {zone} zone consolidation."
    if kind == "nodule":
        zone = _zone(finding.position[1])
        # Taking the image height as 40 cm of film turns the radius into a diameter in millimetres.
        millimetres = max(3, round(2 * finding.size * 400))
        if subtle:
            return _pick(rng, (
                f"Possible {millimetres} mm nodule in the {side} {zone} lung; a nipple shadow cannot be excluded.",
                f"Questionable small nodule in the {side} {zone} zone.",
            )), f"Possible {side} pulmonary nodule; follow-up suggested."
        return _pick(rng, (
            f"{millimetres} mm nodule in the {side} {zone} lung.",
            f"Well-circumscribed {millimetres} mm pulmonary nodule in the {side} {zone} zone.",
        )), f"{_capitalise(side)} {zone} lung nodule; CT recommended."
    if kind == "pneumothorax":
        size = _size_word(finding.size, 0.12, 0.25)
        if subtle:
            return _pick(rng, (
                f"Possible small {side} apical pneumothorax.",
                f"A thin {side} apical pleural line may represent a small pneumothorax.",
                f"Small {side} pneumothorax cannot be excluded.",
            )), f"Possible small {side} pneumothorax."
        return _pick(rng, (
            f"{_capitalise(size)} {side} pneumothorax with a visible pleural line.",
            f"There is a {size} {side} pneumothorax.",
            f"{_capitalise(side)} apical pneumothorax, {size} in size.",
        )), f"{_capitalise(size)} {side} pneumothorax."
    if kind == "rib_fracture":
        numbers = [_ordinal(f.rib) for f in group]
        levels = numbers[0] if len(numbers) == 1 else ", ".join(numbers[:-1]) + " and " + numbers[-1]
        ribs = "rib" if len(numbers) == 1 else "ribs"
        fractures = "fracture" if len(numbers) == 1 else "fractures"
        if subtle:
            return _pick(rng, (
                f"Possible nondisplaced {fractures} of the {side} {levels} posterior {ribs}.",
                f"Cortical irregularity of the {side} {levels} {ribs}; nondisplaced {fractures} cannot be excluded.",
                f"Likely subtle {fractures} of the {side} {levels} {ribs}.",
            )), f"Possible {side} {levels} rib {fractures}."
        return _pick(rng, (
            f"Acute {fractures} of the {side} {levels} posterior {ribs}.",
            f"Displaced {fractures} of the {side} {levels} {ribs}.",
            f"{_capitalise(side)} {levels} rib {fractures} with cortical step-off.",
        )), f"{_capitalise(side)} {levels} rib {fractures}."
    if subtle:
        return _pick(rng, (
            f"Possible nondisplaced fracture of the {side} clavicle.",
            f"Lucency through the {side} mid clavicle; a nondisplaced fracture cannot be excluded.",
        )), f"Possible {side} clavicle fracture."
    return _pick(rng, (
        f"Displaced fracture of the {side} clavicle.",
        f"Fracture of the {side} mid clavicle with displacement.",
        f"Acute {side} midshaft clavicle fracture.",
    )), f"{_capitalise(side)} clavicle fracture."


def write_report(findings: Sequence[Finding], rng: np.random.Generator) -> str:
    """A free-text report ``"FINDINGS: ... IMPRESSION: ..."`` that states every finding in ``findings``.

    Sentences are drawn from varied templates with synonyms. Subtle findings are hedged ("possible",
    "cannot be excluded", "likely"); absent findings are denied or left unmentioned; some reports
    carry de-identification placeholders ``XXXX``. Fractures name the side and the rib level or the
    clavicle.

    Example:
        >>> write_report((Finding("pneumothorax", 0.9, "left", size=0.3),), np.random.default_rng(0))[:9]
        'FINDINGS:'
    """
    groups: dict[str, list[list[Finding]]] = {}
    for finding in findings:
        kind_groups = groups.setdefault(finding.kind, [])
        same_side = [g for g in kind_groups if g[0].side == finding.side]
        if finding.kind == "rib_fracture" and same_side:
            same_side[0].append(finding)
        else:
            kind_groups.append([finding])
    present = set(groups)
    sentences: list[str] = []
    impressions: list[str] = []
    if rng.random() < 0.25:
        sentences.append(_pick(rng, _DEIDENTIFIED_SENTENCES))

    def state(kind: str) -> None:
        for group in groups.get(kind, ()):
            sentence, impression = _describe(kind, group, rng)
            sentences.append(sentence)
            impressions.append(impression)

    if "cardiomegaly" in present:
        state("cardiomegaly")
    elif rng.random() < 0.9:
        sentences.append(_pick(rng, _NEGATIVE_SENTENCES["cardiomegaly"]))
    if rng.random() < 0.5:
        sentences.append(_pick(rng, _NORMAL_SENTENCES))
    for kind in ("lung_opacity", "nodule", "pleural_effusion", "pneumothorax"):
        state(kind)
    chest_negatives = [k for k in ("lung_opacity", "pleural_effusion", "pneumothorax") if k not in present]
    if not {"lung_opacity", "nodule"} & present and rng.random() < 0.4:
        sentences.append("The lungs are clear.")
    if len(chest_negatives) == 3 and rng.random() < 0.3:
        sentences.append("No focal consolidation, pleural effusion, or pneumothorax.")
    elif {"pleural_effusion", "pneumothorax"} <= set(chest_negatives) and rng.random() < 0.4:
        sentences.append("No pleural effusion or pneumothorax.")
        if "lung_opacity" in chest_negatives:
            sentences.append(_pick(rng, _NEGATIVE_SENTENCES["lung_opacity"]))
    else:
        sentences.extend(_pick(rng, _NEGATIVE_SENTENCES[k]) for k in chest_negatives if rng.random() < 0.9)
    if "nodule" not in present and rng.random() < 0.5:
        sentences.append(_pick(rng, _NEGATIVE_SENTENCES["nodule"]))
    for kind in FRACTURE_CLASS_NAMES:
        state(kind)
    fracture_kinds = present & set(FRACTURE_CLASS_NAMES)
    if not fracture_kinds:
        if rng.random() < 0.7:
            sentences.append(_pick(rng, _NEGATIVE_SENTENCES["fracture"]))
    elif len(fracture_kinds) == 1 and rng.random() < 0.5:
        (intact,) = set(FRACTURE_CLASS_NAMES) - fracture_kinds
        sentences.append(_pick(rng, _NEGATIVE_SENTENCES[intact]))

    if not impressions:
        impression = _pick(rng, _NORMAL_IMPRESSIONS)
    elif len(impressions) > 1 and rng.random() < 0.5:
        impression = " ".join(f"{i}. {text}" for i, text in enumerate(impressions, start=1))
    else:
        impression = " ".join(impressions)
    if rng.random() < 0.1:
        impression = f"{impression} {_pick(rng, _DEIDENTIFIED_CLOSINGS)}"
    return f"FINDINGS: {' '.join(sentences)} IMPRESSION: {impression}"


def generate_phantom_dataset(
    output_dir: str | Path,
    num_patients: int = 200,
    seed: int = 0,
    image_size: Sequence[int] = (256, 256),
    studies_per_patient: Sequence[int] = (1, 2),
    prevalence: Mapping[str, float] | None = None,
    region_annotated_fraction: float = 0.2,
    split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
) -> dict[str, str]:
    """Write a synthetic chest radiograph dataset (for demos and tests only) with both bundles' datalists.

    Output in ``output_dir``:

    - ``images/<patient>_<study>.png``: 8-bit grayscale posteroanterior radiographs of ``image_size``;
    - ``datalist_vkd.json``: ``class_names`` (:data:`VKD_CLASS_NAMES`) and ``training`` /
      ``validation`` / ``test`` items ``{"image", "report", "label", "patient_id"}``;
    - ``datalist_fracture.json``: ``class_names`` (:data:`FRACTURE_CLASS_NAMES`) and items
      ``{"image", "image_label", "subset", "boxes", "points", "patient_id"}``. In ``training`` a
      ``region_annotated_fraction`` of the fracture-positive images are ``D_R`` (with boxes and points),
      the others ``D_P`` (no ``boxes`` / ``points`` keys); negatives are ``D_N`` with empty lists.
      Validation and test items always carry every fracture's box and point;
    - ``summary.json``: the arguments, and per split the counts, positives and prevalence of each class.

    Patients are split, all their studies together, by :func:`cxrkd_monai.data.splits.split_patients`
    with ``seed``; a split with a positive fraction must not come out empty. The output is byte-identical
    for the same arguments. Each patient's anatomy and each study's positioning depend only on
    ``seed`` and the patient and study numbers, so changing a prevalence changes which findings are
    drawn but not the patients.

    Args:
        output_dir: folder to write into (created if missing).
        num_patients: number of patients.
        seed: seed of everything random.
        image_size: ``(W, H)`` in pixels, each at least 64.
        studies_per_patient: ``(min, max)`` number of studies per patient, inclusive.
        prevalence: probability of each finding kind in :data:`FINDING_KINDS`, overriding
            :data:`DEFAULT_PREVALENCE`.
        region_annotated_fraction: fraction of the fracture-positive training images with region
            annotations (at least one image when positive and there are fracture-positive images).
        split_fractions: fractions of patients in training, validation and test; they sum to 1.

    Returns:
        Paths of ``datalist_vkd``, ``datalist_fracture``, ``image_dir`` and ``summary``.

    Example:
        >>> paths = generate_phantom_dataset("phantom", num_patients=20, image_size=(128, 128))
        >>> sorted(paths)
        ['datalist_fracture', 'datalist_vkd', 'image_dir', 'summary']
    """
    width, height = _checked_image_size(image_size)
    fewest_studies, most_studies = _checked_studies_per_patient(studies_per_patient)
    fractions = _checked_split_fractions(split_fractions)
    rates = _resolve_prevalence(prevalence)
    if not 0.0 <= region_annotated_fraction <= 1.0:
        raise ValueError(f"region_annotated_fraction must be in [0, 1], got {region_annotated_fraction!r}.")
    splits = _split_patients(num_patients, fractions, seed)

    root = Path(output_dir)
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    digits = max(4, len(str(num_patients)))
    studies = []
    for index in range(num_patients):
        patient_id = f"p{index + 1:0{digits}d}"
        patient_rng = np.random.default_rng([seed, index])
        anatomy = sample_anatomy(patient_rng)
        for study in range(int(patient_rng.integers(fewest_studies, most_studies + 1))):
            study_rng = np.random.default_rng([seed, index, study + 1])
            acquisition = sample_acquisition(study_rng)
            findings = sample_findings(study_rng, anatomy, rates)
            image = f"images/{patient_id}_s{study + 1:02d}.png"
            pixels = render_chest_radiograph(anatomy, acquisition, findings, (width, height))
            Image.fromarray(pixels).save(root / image, format="PNG")
            kinds = {finding.kind for finding in findings}
            studies.append({
                "split": splits[index],
                "patient_id": patient_id,
                "image": image,
                "report": write_report(findings, study_rng),
                "label": [int(bool(kinds.intersection(group))) for group in _VKD_CLASS_KINDS],
                "image_label": [int(name in kinds) for name in FRACTURE_CLASS_NAMES],
                "regions": fracture_regions(anatomy, acquisition, findings, (width, height)),
            })

    region_annotated = _draw_region_annotated(studies, region_annotated_fraction, seed)
    vkd_datalist: dict[str, list] = {"class_names": list(VKD_CLASS_NAMES)}
    fracture_datalist: dict[str, list] = {"class_names": list(FRACTURE_CLASS_NAMES)}
    for split in _SPLIT_NAMES:
        vkd_datalist[split] = [
            {"image": s["image"], "report": s["report"], "label": s["label"], "patient_id": s["patient_id"]}
            for s in studies
            if s["split"] == split
        ]
        fracture_datalist[split] = [
            _fracture_item(s, position in region_annotated) for position, s in enumerate(studies) if s["split"] == split
        ]
    summary = _summary(studies, fracture_datalist, rates, seed, (width, height), region_annotated_fraction)

    paths = {
        "datalist_vkd": root / "datalist_vkd.json",
        "datalist_fracture": root / "datalist_fracture.json",
        "summary": root / "summary.json",
    }
    contents = {"datalist_vkd": vkd_datalist, "datalist_fracture": fracture_datalist, "summary": summary}
    for key, content in contents.items():
        paths[key].write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return {
        "datalist_vkd": str(paths["datalist_vkd"]),
        "datalist_fracture": str(paths["datalist_fracture"]),
        "image_dir": str(image_dir),
        "summary": str(paths["summary"]),
    }


def _checked_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, (str, bytes)) or len(image_size) != 2:
        raise ValueError(f"image_size must be (W, H), got {image_size!r}.")
    width, height = (int(side) for side in image_size)
    if min(width, height) < _MIN_IMAGE_SIDE:
        raise ValueError(f"image_size sides must be at least {_MIN_IMAGE_SIDE} pixels, got {tuple(image_size)}.")
    return width, height


def _checked_studies_per_patient(studies_per_patient: Sequence[int]) -> tuple[int, int]:
    if isinstance(studies_per_patient, (str, bytes)) or len(studies_per_patient) != 2:
        raise ValueError(f"studies_per_patient must be (min, max), got {studies_per_patient!r}.")
    fewest, most = (int(count) for count in studies_per_patient)
    if not 1 <= fewest <= most:
        raise ValueError(f"studies_per_patient must satisfy 1 <= min <= max, got {tuple(studies_per_patient)}.")
    return fewest, most


def _checked_split_fractions(split_fractions: Sequence[float]) -> np.ndarray:
    fractions = np.asarray(split_fractions, dtype=np.float64)
    if fractions.shape != (3,) or np.any(fractions < 0) or not math.isclose(fractions.sum(), 1.0, abs_tol=1e-6):
        raise ValueError(
            f"split_fractions must be three non-negative fractions (training, validation, test) summing to 1, "
            f"got {tuple(split_fractions)}."
        )
    if fractions[0] == 0:
        raise ValueError(f"split_fractions must give training a positive fraction, got {tuple(split_fractions)}.")
    return fractions


def _split_patients(num_patients: int, fractions: np.ndarray, seed: int) -> list[str]:
    """The split of every patient (by patient number), each split with a positive fraction non-empty."""
    if int(num_patients) != num_patients or num_patients < 1:
        raise ValueError(f"num_patients must be a positive integer, got {num_patients!r}.")
    assignment = split_patients(list(range(num_patients)), tuple(fractions), seed)
    splits = [assignment[index] for index in range(num_patients)]
    empty = [name for name, fraction in zip(_SPLIT_NAMES, fractions) if fraction > 0 and name not in splits]
    if empty:
        raise ValueError(
            f"num_patients={num_patients} leaves the {empty} split(s) empty with split_fractions "
            f"{tuple(float(f) for f in fractions)}; use more patients."
        )
    return splits


def _draw_region_annotated(studies: Sequence[dict], fraction: float, seed: int) -> set[int]:
    """Positions (in ``studies``) of the fracture-positive training images that become ``D_R``."""
    positives = [i for i, s in enumerate(studies) if s["split"] == "training" and any(s["image_label"])]
    count = round(fraction * len(positives))
    if fraction > 0 and positives:
        count = max(1, count)
    chosen = np.random.default_rng([seed, _SUBSET_STREAM]).choice(len(positives), size=count, replace=False)
    return {positives[i] for i in chosen}


def _fracture_item(study: Mapping, region_annotated: bool) -> dict:
    positive = any(study["image_label"])
    item = {"image": study["image"], "image_label": study["image_label"]}
    if study["split"] == "training" and positive and not region_annotated:
        item["subset"] = "D_P"
    else:
        item["subset"] = "D_R" if positive else "D_N"
        item["boxes"] = [[*(round(v, 2) for v in r.box), r.class_name] for r in study["regions"]]
        item["points"] = [[*(round(v, 2) for v in r.point), r.class_name] for r in study["regions"]]
    item["patient_id"] = study["patient_id"]
    return item


def _summary(
    studies: Sequence[dict],
    fracture_datalist: Mapping[str, list],
    rates: Mapping[str, float],
    seed: int,
    image_size: tuple[int, int],
    region_annotated_fraction: float,
) -> dict:
    splits = {}
    for split in _SPLIT_NAMES:
        members = [s for s in studies if s["split"] == split]
        count = len(members)
        vkd_positives = {n: sum(s["label"][i] for s in members) for i, n in enumerate(VKD_CLASS_NAMES)}
        fracture_positives = {n: sum(s["image_label"][i] for s in members) for i, n in enumerate(FRACTURE_CLASS_NAMES)}
        items = fracture_datalist[split]
        splits[split] = {
            "patients": len({s["patient_id"] for s in members}),
            "images": count,
            "vkd_positives": vkd_positives,
            "vkd_prevalence": {n: round(v / max(count, 1), 4) for n, v in vkd_positives.items()},
            "fracture_positives": fracture_positives,
            "fracture_prevalence": {n: round(v / max(count, 1), 4) for n, v in fracture_positives.items()},
            "fracture_subsets": {name: sum(item["subset"] == name for item in items) for name in ("D_R", "D_P", "D_N")},
            "fracture_boxes": sum(len(item.get("boxes", ())) for item in items),
        }
    return {
        "description": (
            "Synthetic chest radiographs for demos and tests only; not for any clinical or scientific claim."
        ),
        "seed": seed,
        "image_size": list(image_size),
        "prevalence": dict(rates),
        "region_annotated_fraction": region_annotated_fraction,
        "splits": splits,
    }
