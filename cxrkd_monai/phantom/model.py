"""The phantom's vocabulary: finding kinds, class names, default prevalences, and the records of a
patient (:class:`ChestAnatomy`), a study's positioning and exposure (:class:`Acquisition`) and an
abnormality (:class:`Finding`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_PREVALENCE",
    "FINDING_KINDS",
    "FRACTURE_CLASS_NAMES",
    "SUBTLE_CONSPICUITY",
    "VKD_CLASS_NAMES",
    "Acquisition",
    "ChestAnatomy",
    "Finding",
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
SUBTLE_CONSPICUITY = 0.35
"""Findings below this conspicuity are subtle: drawn faintly and reported with a hedge."""


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
