"""Saliency overlays and the upright TensorBoard views of (C, W, H) radiographs."""

import numpy as np
import pytest
import torch

from cxrkd_monai.visualize import heat_colours, saliency_overlay, saliency_to_png_array, upright_from_engine


def test_heat_colours_ramp_through_red_and_yellow():
    np.testing.assert_allclose(
        heat_colours(np.array([0.0, 1 / 3, 0.5, 2 / 3, 1.0])),
        [[0, 0, 0], [1, 0, 0], [1, 0.5, 0], [1, 1, 0], [1, 1, 1]],
        atol=1e-12,
    )


def test_overlay_is_upright_and_leaves_unexplained_pixels_grey():
    image = np.zeros((1, 6, 4))  # (C, W, H): 6 columns, 4 rows
    image[0, 5, 0] = 0.5  # x = 5, y = 0: top-right pixel
    saliency = np.zeros((6, 4))
    saliency[0, 3] = 1.0  # bottom-left pixel fully salient
    overlay = saliency_overlay(image, saliency, opacity=0.5, max_size=None)
    assert overlay.shape == (4, 6, 3) and overlay.dtype == np.uint8
    np.testing.assert_array_equal(overlay[0, 5], [128, 128, 128])
    np.testing.assert_array_equal(overlay[3, 0], [128, 128, 128])  # half of black, half of white heat
    np.testing.assert_array_equal(overlay[1, 1], [0, 0, 0])


def test_overlay_thumbnail_keeps_the_aspect_ratio():
    overlay = saliency_overlay(np.random.rand(300, 150), np.random.rand(300, 150), max_size=100)
    assert overlay.shape == (50, 100, 3)


def test_overlay_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in spatial shape"):
        saliency_overlay(np.zeros((4, 4)), np.zeros((4, 5)))


def test_png_array_is_rows_by_columns():
    saliency = torch.zeros(1, 3, 2)
    saliency[0, 2, 1] = 1.0
    png = saliency_to_png_array(saliency)
    assert png.shape == (2, 3) and png[1, 2] == 255 and png.sum() == 255


def test_upright_from_engine_transposes_images_and_fills_missing_keys():
    items = [{"image": torch.arange(6.0).reshape(1, 3, 2), "label": torch.ones(4)} for _ in range(2)]
    images, nothing = upright_from_engine(["image", None])(items)
    assert images[0].shape == (1, 2, 3) and images[0][0, 1, 2] == items[0]["image"][0, 2, 1]
    assert nothing == [None, None]
    labels = upright_from_engine("label")({"label": torch.ones(2, 4)})
    assert len(labels) == 2 and labels[0].shape == (4,)
    collated = {"image": torch.zeros(3, 1, 5, 2), "boxes": [[], [[0, 0, 1, 1]], []]}
    images, nothing = upright_from_engine(["image", None])(collated)
    assert [image.shape for image in images] == [(1, 2, 5)] * 3 and nothing == [None] * 3
