"""fracture_regions: each box and point lies where the rendered break changes the pixels, and scales with the image."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkd_monai.phantom import (
    FRACTURE_CLASS_NAMES,
    fracture_regions,
)
from tests.phantom.conftest import HEIGHT, WIDTH, twin


@pytest.mark.parametrize("kind", FRACTURE_CLASS_NAMES)
@pytest.mark.parametrize("seed", range(4))
def test_a_fracture_changes_the_pixels_inside_its_box(kind, seed):
    anatomy, acquisition, findings, with_fracture, without = twin(kind, seed)
    difference = np.abs(with_fracture - without)
    regions = fracture_regions(anatomy, acquisition, findings, (WIDTH, HEIGHT))
    assert len(regions) == len(findings) >= 1
    inside = np.zeros(difference.shape, dtype=bool)
    for region in regions:
        assert region.class_name == kind
        x1, y1, x2, y2 = region.box
        inside[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = True
        x, y = region.point
        near_point = difference[max(int(y) - 2, 0) : int(y) + 3, max(int(x) - 2, 0) : int(x) + 3]
        assert near_point.max() >= 8, (region, near_point)
    # The break is where the twins differ: the largest change and most of the total lie in the boxes.
    assert inside[np.unravel_index(difference.argmax(), difference.shape)]
    assert difference[inside].sum() > 0.5 * difference.sum()
    assert difference[inside].mean() > 20 * difference[~inside].mean()


def test_fracture_boxes_scale_with_the_image():
    anatomy, acquisition, findings, _, _ = twin("rib_fracture", 0)
    small = fracture_regions(anatomy, acquisition, findings, (100, 100))[0]
    large = fracture_regions(anatomy, acquisition, findings, (200, 200))[0]
    np.testing.assert_allclose(np.asarray(large.point), 2 * np.asarray(small.point), rtol=1e-6)
    # The two-pixel margin does not scale; the step edge is half a pixel wide, hence the tolerance.
    np.testing.assert_allclose(large.box[2] - large.box[0], 2 * (small.box[2] - small.box[0]) - 4, atol=0.1)
    np.testing.assert_allclose(large.box[3] - large.box[1], 2 * (small.box[3] - small.box[1]) - 4, atol=0.1)
