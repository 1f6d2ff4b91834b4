"""Drawing the phantom's content: a patient's body, a study's positioning and exposure, and its findings."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from cxrkd_monai.phantom.geometry import (
    SIDE_SIGN,
    clavicle_centre,
    clavicle_half_thickness,
    posterior_rib_centre,
    visible_lung,
)
from cxrkd_monai.phantom.model import DEFAULT_PREVALENCE, FINDING_KINDS, Acquisition, ChestAnatomy, Finding

__all__ = ["resolve_prevalence", "sample_acquisition", "sample_anatomy", "sample_findings"]


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
    rates = resolve_prevalence(prevalence)
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
        displacement = direction * (0.25 + 1.25 * conspicuity) * 2 * clavicle_half_thickness(anatomy)
        centre, _ = clavicle_centre(anatomy, t)
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
        centre, _ = posterior_rib_centre(anatomy, rib, t)
        fractures.append(Finding("rib_fracture", conspicuity, side, (t, float(centre)), displacement, rib=rib))
    return fractures


def _point_inside_lung(
    rng: np.random.Generator, anatomy: ChestAnatomy, heart_ratio: float, side: str, margin: float
) -> tuple[float, float]:
    """A ``(t, b)`` well inside the visible lung on ``side`` (not behind the heart or mediastinum)."""
    sign = SIDE_SIGN[side]
    # Almost every draw lands inside within a few tries; the last draw stands if none does.
    for _ in range(200):
        t = rng.uniform(0.25, anatomy.thorax_half_width - margin)
        b = rng.uniform(anatomy.lung_apex + margin, anatomy.dome_tops[1] + 0.08)
        ring = [(t + dt, b + db) for dt, db in ((0, 0), (margin, 0), (-margin, 0), (0, margin), (0, -margin))]
        ts, bs = np.array(ring).T
        if np.min(visible_lung(anatomy, heart_ratio, sign * ts, bs, edge=0.004)) > 0.9:
            break
    return float(t), float(b)


def resolve_prevalence(prevalence: Mapping[str, float] | None) -> dict[str, float]:
    rates = dict(DEFAULT_PREVALENCE)
    for kind, value in (prevalence or {}).items():
        if kind not in DEFAULT_PREVALENCE:
            raise ValueError(f"prevalence has unknown key {kind!r}; known keys are {list(FINDING_KINDS)}.")
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"prevalence[{kind!r}] must be in [0, 1], got {value!r}.")
        rates[kind] = float(value)
    return rates
