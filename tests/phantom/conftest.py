"""The phantom generator's test set-up: a small generated dataset and studies rendered with and without one
finding. Test modules import the helpers from ``tests.phantom.conftest``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxrkd_monai.phantom import (
    FINDING_KINDS,
    generate_phantom_dataset,
    render_chest_radiograph,
    sample_acquisition,
    sample_anatomy,
    sample_findings,
)

WIDTH, HEIGHT = 128, 112  # non-square, so that a W/H mix-up shows
NUM_PATIENTS = 12
ONLY = {kind: 0.0 for kind in FINDING_KINDS}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("phantom")
    paths = generate_phantom_dataset(root, num_patients=NUM_PATIENTS, seed=3, image_size=(WIDTH, HEIGHT))
    return {key: Path(value) for key, value in paths.items()}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def twin(kind: str, seed: int, image_size=(WIDTH, HEIGHT)):
    """A study with exactly one finding kind, its image, and the same study rendered without it."""
    rng = np.random.default_rng([seed, 17])
    anatomy, acquisition = sample_anatomy(rng), sample_acquisition(rng)
    findings = sample_findings(rng, anatomy, {**ONLY, kind: 1.0})
    with_finding = render_chest_radiograph(anatomy, acquisition, findings, image_size).astype(np.int32)
    without = render_chest_radiograph(anatomy, acquisition, (), image_size).astype(np.int32)
    return anatomy, acquisition, findings, with_finding, without
