import numpy as np
import pytest
import torch

from cxrkd_monai.transforms import Letterboxd, LetterboxGeometry


def test_fit_keeps_aspect_and_centres():
    geometry = LetterboxGeometry.fit((200, 100), (64, 64))
    assert geometry.resized_size == (64, 32)
    assert geometry.pad_before == (0, 16)
    np.testing.assert_allclose(geometry.scale, [0.32, 0.32])


def test_coordinates_round_trip_within_a_pixel():
    geometry = LetterboxGeometry.fit((317, 251), (128, 128))
    rng = np.random.default_rng(0)
    points = rng.uniform([0, 0], [317, 251], size=(50, 2))
    grid = geometry.to_grid(points)
    assert np.all(grid >= 0) and np.all(grid <= 128)
    np.testing.assert_allclose(geometry.to_original(grid), points, atol=1e-9)
    boxes = np.array([[10.0, 20.0, 40.0, 60.0, 1.0]])
    back = geometry.boxes_to_original(geometry.boxes_to_grid(boxes))
    np.testing.assert_allclose(back, boxes, atol=1e-9)
    assert back[0, 4] == 1.0


def test_letterboxd_moves_a_bright_pixel_to_its_mapped_coordinate():
    width, height = 120, 80
    image = torch.zeros(1, width, height)
    x, y = 90, 20
    image[0, x : x + 4, y : y + 4] = 1.0  # a 4x4 block centred at (92, 22)
    out = Letterboxd(keys="image", spatial_size=(60, 60), point_keys="points")(
        {"image": image, "points": np.array([[x + 2.0, y + 2.0, 0.0]])}
    )
    assert out["image"].shape == (1, 60, 60)
    geometry = LetterboxGeometry.from_tensor(out["geometry"])
    assert geometry.original_size == (120, 80)
    peak = np.unravel_index(int(torch.argmax(out["image"][0])), (60, 60))
    expected = out["points"][0, :2]
    assert abs(peak[0] + 0.5 - expected[0]) <= 1.0 and abs(peak[1] + 0.5 - expected[1]) <= 1.0
    np.testing.assert_allclose(geometry.to_original(expected), [92.0, 22.0], atol=1e-9)
    # padding rows are the pad value: the short axis (y) is padded on both sides
    assert float(out["image"][0, :, : geometry.pad_before[1]].abs().sum()) == 0.0


def test_grid_map_back_to_original_size():
    geometry = LetterboxGeometry.fit((120, 80), (64, 64))
    strided_map = torch.rand(2, 16, 16)
    restored = geometry.grid_to_original_image(strided_map)
    assert restored.shape == (2, 120, 80)


def test_mismatched_keys_raise():
    with pytest.raises(ValueError, match="label"):
        Letterboxd(keys=["image", "label"], spatial_size=32)(
            {"image": torch.zeros(1, 40, 20), "label": torch.zeros(1, 20, 40)}
        )
