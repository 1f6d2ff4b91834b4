"""Fuzzing the letterbox and its inverse with generated image and grid sizes, aspect ratios from 1:40 to 40:1.

For every case: the letterbox fits (resized sides of at least one pixel, inside the grid), coordinates go to the
grid and back unchanged, a map at the network's output stride comes back at original size with each pixel centre
sampled at its grid position, and a letterboxed image mapped back holds no padding.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from cxrkd_monai.transforms import Letterboxd, LetterboxGeometry
from tests.conftest import assert_map_back_samples_pixel_centres

GEOMETRY_CASES = 200
MAX_RATIO = 40


@st.composite
def letterbox_cases(draw):
    """``(original_size, grid_size, stride)``: an image whose sides differ by at most :data:`MAX_RATIO` times, in
    either orientation, and a grid whose sides are multiples of the stride."""
    short = draw(st.integers(1, 100))
    long = draw(st.integers(short, min(2000, MAX_RATIO * short)))
    original_size = (short, long) if draw(st.booleans()) else (long, short)
    stride = draw(st.sampled_from([1, 2, 4]))
    grid_size = (draw(st.integers(1, 64)) * stride, draw(st.integers(1, 64)) * stride)
    return original_size, grid_size, stride


def test_letterbox_round_trip_holds_for_aspect_ratios_from_1_in_40_to_40(case_counter, fuzz_settings):
    count = case_counter("geometry")

    @fuzz_settings(GEOMETRY_CASES)
    @given(letterbox_cases(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
    def run(case, u, v):
        count()
        original_size, grid_size, stride = case
        out = Letterboxd(keys="image", spatial_size=grid_size)({"image": torch.ones(1, *original_size)})
        assert out["image"].shape == (1, *grid_size)
        geometry = LetterboxGeometry.from_tensor(out["geometry"])
        assert geometry.original_size == original_size
        resized, pad = np.asarray(geometry.resized_size), np.asarray(geometry.pad_before)
        assert np.all(resized >= 1) and np.all(pad >= 0) and np.all(pad + resized <= grid_size)

        point = np.array([u, v]) * original_size
        on_grid = geometry.to_grid(point)
        assert np.all(on_grid >= pad - 1e-9) and np.all(on_grid <= pad + resized + 1e-9)
        np.testing.assert_allclose(geometry.to_original(on_grid), point, rtol=1e-12, atol=1e-9)

        assert_map_back_samples_pixel_centres(geometry, stride)

        restored_image = geometry.grid_to_original_image(out["image"], mode="nearest")
        assert torch.equal(restored_image, torch.ones(1, *original_size))

    run()
