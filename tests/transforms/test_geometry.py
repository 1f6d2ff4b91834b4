import numpy as np
import pytest
import torch

from cxrkd_monai.transforms import Letterboxd, LetterboxGeometry
from tests.conftest import assert_map_back_samples_pixel_centres


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


# (original size, grid size): the aspect ratios 1:40 to 40:1, and the extreme images of a real inference run
EXTREME_SHAPES = [
    ((50, 2000), (64, 64)),
    ((2000, 50), (64, 64)),
    ((64, 2000), (64, 64)),
    ((2000, 64), (512, 512)),
    ((64, 2000), (512, 512)),
    ((8, 2000), (512, 512)),
    ((13, 37), (64, 48)),
    ((400, 10), (96, 128)),
]


@pytest.mark.parametrize(("original_size", "grid_size"), EXTREME_SHAPES)
def test_fit_holds_for_any_aspect_ratio(original_size, grid_size):
    geometry = LetterboxGeometry.fit(original_size, grid_size)
    resized, pad = np.asarray(geometry.resized_size), np.asarray(geometry.pad_before)
    assert np.all(resized >= 1) and np.all(pad >= 0) and np.all(pad + resized <= grid_size)
    # the limiting axis fills the grid
    assert np.any(resized == grid_size)
    corners = np.array([[0.0, 0.0], original_size])
    np.testing.assert_allclose(geometry.to_grid(corners), [pad, pad + resized], atol=1e-9)
    np.testing.assert_allclose(geometry.to_original(geometry.to_grid(corners)), corners, atol=1e-9)


@pytest.mark.parametrize(("original_size", "grid_size"), EXTREME_SHAPES)
@pytest.mark.parametrize("stride", [1, 4])
def test_map_back_samples_each_pixel_centre_at_its_grid_position(original_size, grid_size, stride):
    assert_map_back_samples_pixel_centres(LetterboxGeometry.fit(original_size, grid_size), stride)


@pytest.mark.parametrize(("original_size", "grid_size"), EXTREME_SHAPES)
def test_letterbox_and_back_keeps_every_pixel_and_no_padding(original_size, grid_size):
    """A white image letterboxed (black padding) and mapped back by nearest neighbour is white everywhere: the
    nearest grid pixel of every original pixel centre lies in the resized image, never in the padding."""
    out = Letterboxd(keys="image", spatial_size=grid_size)({"image": torch.ones(1, *original_size)})
    geometry = LetterboxGeometry.from_tensor(out["geometry"])
    assert float(out["image"].sum()) == pytest.approx(np.prod(geometry.resized_size))
    restored = geometry.grid_to_original_image(out["image"], mode="nearest")
    assert restored.shape == (1, *original_size)
    assert torch.equal(restored, torch.ones(1, *original_size))


def test_map_back_refuses_a_map_of_another_rank():
    geometry = LetterboxGeometry.fit((40, 30), (32, 32))
    with pytest.raises(ValueError, match="2 spatial axes"):
        geometry.grid_to_original_image(torch.zeros(1, 1, 8, 8, 8))
