"""render_chest_radiograph: each finding changes the image the way it should, on the patient's side."""

from __future__ import annotations

import numpy as np
import pytest

from tests.phantom.conftest import WIDTH, twin


@pytest.mark.parametrize(
    "kind, brighter",
    [("cardiomegaly", True), ("pleural_effusion", True), ("lung_opacity", True), ("nodule", True),
     ("pneumothorax", False)],
)
def test_each_chest_finding_changes_the_image_the_expected_way(kind, brighter):
    for seed in range(3):
        _, _, findings, with_finding, without = twin(kind, seed)
        difference = with_finding - without
        changed = np.abs(difference) > 6
        assert changed.sum() >= 5, (kind, seed, findings)
        # Opacities add density (brighter); a pneumothorax removes lung tissue (darker).
        assert (difference[changed].mean() > 0) == brighter, (kind, seed)


@pytest.mark.parametrize("kind", ["lung_opacity", "nodule", "pneumothorax", "rib_fracture", "clavicle_fracture"])
def test_the_patients_right_is_on_the_image_left(kind):
    for seed in range(3):
        _, _, findings, with_finding, without = twin(kind, seed)
        _, column = np.unravel_index(np.argmax(np.abs(with_finding - without)), with_finding.shape)
        assert (column < WIDTH / 2) == (findings[0].side == "right"), (kind, seed, findings[0].side, column)
