"""The renderer: one posteroanterior chest radiograph from a patient, a study's acquisition and its findings."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d
from scipy.special import expit

from cxrkd_monai.phantom.geometry import (
    SIDE_SIGN,
    Break,
    Frame,
    anterior_rib_centre,
    break_of,
    chest_wall,
    clavicle_centre,
    clavicle_half_thickness,
    dome,
    heart_field,
    lung_field,
    mediastinum_field,
    posterior_rib_centre,
)
from cxrkd_monai.phantom.model import FINDING_KINDS, Acquisition, ChestAnatomy, Finding

__all__ = ["render_chest_radiograph"]

_LUNG_AIR = 0.3


def _add_bone_band(
    bone: np.ndarray,
    weight: float,
    frame: Frame,
    t: np.ndarray,
    b: np.ndarray,
    centre_of: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    half_thickness: float,
    extent: tuple[float, np.ndarray],
    bounds: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    breaks: Sequence[Break] = (),
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
        >>> from cxrkd_monai.phantom import sample_acquisition, sample_anatomy
        >>> rng = np.random.default_rng(0)
        >>> anatomy = sample_anatomy(rng)
        >>> image = render_chest_radiograph(anatomy, sample_acquisition(rng), (), (128, 112))
        >>> image.shape, image.dtype
        ((112, 128), dtype('uint8'))
    """
    width, height = (int(s) for s in image_size)
    frame = Frame(acquisition, width, height)
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
    dome_under = np.where(a < 0, dome(anatomy, "right", -a), dome(anatomy, "left", a))
    density += 0.1 * body * expit((b - dome_under) / (4 * edge))
    gastric_bubble = ((a - 0.4) / 0.07) ** 2 + ((b - anatomy.dome_tops[1] - 0.05) / 0.025) ** 2
    density -= 0.1 * expit((1.0 - gastric_bubble) * 0.025 / edge)

    heart = heart_field(anatomy, heart_ratio, a, b, edge)
    uncovered = (1.0 - heart) * (1.0 - mediastinum_field(anatomy, a, b, edge))
    density += 0.02 * heart
    trachea = expit((0.028 - np.abs(a - 0.005)) / edge) * expit((anatomy.lung_apex + 0.22 - b) / 0.02)
    density -= 0.1 * trachea * body

    fine_texture = gaussian_filter(noise_rng.standard_normal((height, width)), 0.008 / frame.pixel_b)
    fine_texture = (fine_texture / (fine_texture.std() + 1e-8)).astype(np.float32)
    for side, sign in SIDE_SIGN.items():
        t = sign * a
        lung = lung_field(anatomy, side, t, b, edge) * uncovered
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
    collapsed = lung_field(anatomy, side, anchor_t + (t - anchor_t) / keep, anchor_b + (b - anchor_b) / keep, edge)
    pleural_space = lung * (1.0 - collapsed)
    density -= (0.05 + 0.05 * pneumothorax.conspicuity) * pleural_space
    # 4 m (1 - m) of a soft mask peaks on its rim: a thin line along the collapsed lung's edge.
    density += (0.05 + 0.1 * pneumothorax.conspicuity) * 4.0 * collapsed * (1.0 - collapsed) * lung
    return lung * collapsed


def _vessel_pattern(
    anatomy: ChestAnatomy, side: str, a: np.ndarray, b: np.ndarray, frame: Frame, fine_texture: np.ndarray
) -> np.ndarray:
    """Vessel markings: streaks radiating from the hilum, fading towards the periphery."""
    sign = SIDE_SIGN[side]
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
    angle_level = dome(anatomy, side, lateral)
    climb = 0.5 + 0.5 * np.clip((t - 0.1) / (lateral - 0.1), 0.0, 1.0) ** 2
    top = angle_level - effusion.size * climb
    # Small effusions keep a soft upper edge, large ones a sharper meniscus.
    return expit((b - top) / (0.02 - 0.012 * effusion.conspicuity))


def _opacity_patch(opacity: Finding, t: np.ndarray, b: np.ndarray, frame: Frame) -> np.ndarray:
    """Hazy, patchy consolidation: a broad blob modulated by smooth random texture."""
    centre_t, centre_b = opacity.position
    distance2 = (((t - centre_t) * frame.slope_scale) ** 2 + (b - centre_b) ** 2) / opacity.size**2
    texture_rng = np.random.default_rng(opacity.texture_seed)
    texture = gaussian_filter(texture_rng.standard_normal(t.shape), 0.02 / frame.pixel_b)
    texture = texture / (texture.std() + 1e-8)
    return np.exp(-distance2) * np.clip(0.75 + 0.35 * texture, 0.0, 1.5)


def _nodule_sphere(nodule: Finding, t: np.ndarray, b: np.ndarray, frame: Frame) -> np.ndarray:
    """Projected thickness of a sphere: a round opacity densest at its centre."""
    centre_t, centre_b = nodule.position
    distance = np.sqrt(((t - centre_t) * frame.slope_scale) ** 2 + (b - centre_b) ** 2)
    chord = np.sqrt(np.clip(1.0 - (distance / nodule.size) ** 2, 0.0, 1.0))
    return chord * expit((nodule.size - distance) / frame.edge)


def _bones(
    anatomy: ChestAnatomy, frame: Frame, a: np.ndarray, b: np.ndarray, by_kind: Mapping[str, list[Finding]]
) -> np.ndarray:
    """Spine, ribs, clavicles, scapulae and humeral heads, with the fractures of this study."""
    edge = frame.edge
    vertebra = np.mod(b - anatomy.first_rib_level, anatomy.rib_spacing) / anatomy.rib_spacing
    disc = np.exp(-(((vertebra - 0.5) / 0.12) ** 2))
    bone = 0.07 * expit((0.055 - np.abs(a)) / edge) * (1.0 - 0.35 * disc)
    lateral = anatomy.thorax_half_width
    rib_ends = chest_wall(anatomy, b) + 0.05
    row_bounds = (b.min(axis=1), b.max(axis=1))
    for side, sign in SIDE_SIGN.items():
        t = sign * a
        bounds = (*row_bounds, t.min(axis=0), t.max(axis=0))
        rib_breaks: dict[int, list[Break]] = {}
        for fracture in by_kind["rib_fracture"]:
            if fracture.side == side:
                rib_breaks.setdefault(fracture.rib, []).append(break_of(fracture))
        for rib in range(1, 11):
            _add_bone_band(
                bone, 0.13, frame, t, b, partial(posterior_rib_centre, anatomy, rib), anatomy.rib_half_thickness,
                (0.06, rib_ends), bounds, rib_breaks.get(rib, ()),
            )
        for rib in range(1, 7):
            _add_bone_band(
                bone, 0.05, frame, t, b, partial(anterior_rib_centre, anatomy, rib), 0.8 * anatomy.rib_half_thickness,
                (0.2, rib_ends), bounds,
            )
        clavicle_breaks = [break_of(f) for f in by_kind["clavicle_fracture"] if f.side == side]
        _add_bone_band(
            bone, 0.3, frame, t, b, partial(clavicle_centre, anatomy), clavicle_half_thickness(anatomy),
            (0.07, np.full_like(b, 0.58)), bounds, clavicle_breaks,
        )
        medial_border = lateral - 0.16 - 0.1 * (anatomy.lung_apex + 0.33 - b) / 0.31
        scapula = expit((t - medial_border) / (2 * edge)) * expit((anatomy.lung_apex + 0.33 - b) / 0.02)
        bone += 0.04 * scapula * expit((b - anatomy.clavicle_level + 0.02) / 0.02)
        head = ((t - lateral - 0.15) * frame.slope_scale) ** 2 + (b - anatomy.clavicle_level + 0.01) ** 2
        bone += 0.15 * expit((0.06 - np.sqrt(head)) / edge)
    return bone
