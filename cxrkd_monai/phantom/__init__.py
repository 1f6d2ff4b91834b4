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

Modules, each depending only on those above it:
    - :mod:`.model`: the finding kinds, class names and default prevalences, and the
      :class:`ChestAnatomy`, :class:`Acquisition` and :class:`Finding` records;
    - :mod:`.geometry`: the body frame, the shapes of the organs and bones in it, bone breaks, and
      the map from the body frame to pixels;
    - :mod:`.sampling`: drawing a patient, a study's acquisition and its findings;
    - :mod:`.render`: drawing the radiograph;
    - :mod:`.regions`: the box and point of each fracture;
    - :mod:`.reports`: the free-text report;
    - :mod:`.dataset`: :func:`generate_phantom_dataset`, which writes images, datalists and summary.
    - :mod:`.dicom`: the phantom's images as synthetic DICOM CR studies, for trying DICOM in, DICOM SR out.
"""

from __future__ import annotations

from .dataset import generate_phantom_dataset
from .model import (
    DEFAULT_PREVALENCE,
    FINDING_KINDS,
    FRACTURE_CLASS_NAMES,
    SUBTLE_CONSPICUITY,
    VKD_CLASS_NAMES,
    Acquisition,
    ChestAnatomy,
    Finding,
)
from .regions import FractureRegion, fracture_regions
from .render import render_chest_radiograph
from .reports import write_report
from .sampling import sample_acquisition, sample_anatomy, sample_findings

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
