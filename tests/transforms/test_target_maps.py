import math

import numpy as np
import pytest
import torch
from monai.transforms import RandFlipd

from cxrkd_monai.transforms.geometry import Letterboxd, LetterboxGeometry
from cxrkd_monai.transforms.target_maps import FractureTargetMapd

STRIDE = 4


def _peak(channel: torch.Tensor) -> np.ndarray:
    return np.array(np.unravel_index(int(torch.argmax(channel)), channel.shape))


def _letterboxed_item():
    """A 100 x 60 (W x H) radiograph with a bright fracture patch, letterboxed to a 64 x 64 grid."""
    image = torch.zeros(1, 100, 60)
    image[0, 20:30, 35:46] = 1.0
    item = {
        "image": image,
        "boxes": np.array([[20.0, 35.0, 30.0, 46.0, 0]]),
        "points": np.array([[70.5, 12.25, 1]]),
    }
    return Letterboxd("image", spatial_size=(64, 64), box_keys="boxes", point_keys="points")(item)


def test_map_shape_dtype_and_range():
    out = FractureTargetMapd(num_classes=2, output_stride=STRIDE)(_letterboxed_item())
    target = out["target"]
    assert target.shape == (2, 16, 16) and target.dtype == torch.float32
    assert target.min() >= 0 and target.max() == 1.0


def test_point_blob_values_are_hand_computed():
    item = {"image": torch.zeros(1, 32, 32), "points": np.array([[13.0, 22.9, 0]])}
    target = FractureTargetMapd(num_classes=1, output_stride=4, point_sigma=2.0)(item)["target"][0]
    # grid (13, 22.9) lies in map pixel (3, 5)
    assert target[3, 5] == 1.0
    assert target[4, 5].item() == pytest.approx(math.exp(-1 / 8))
    assert target[5, 7].item() == pytest.approx(math.exp(-8 / 8))


def test_box_blob_is_anisotropic_with_box_sized_sigma():
    item = {"image": torch.zeros(1, 64, 64), "boxes": np.array([[8.0, 24.0, 40.0, 32.0, 1]])}
    target = FractureTargetMapd(num_classes=2, output_stride=4, box_sigma_scale=0.25)(item)["target"]
    assert target[0].max() == 0
    # centre (24, 28) -> map pixel (6, 7); sigma = (32, 8) * 0.25 / 4 = (2, 0.5) map pixels
    assert target[1, 6, 7] == 1.0
    assert target[1, 8, 7].item() == pytest.approx(math.exp(-0.5 * (2 / 2) ** 2))
    assert target[1, 6, 8].item() == pytest.approx(math.exp(-0.5 * (1 / 0.5) ** 2))


def test_overlapping_blobs_combine_by_maximum():
    points = np.array([[10.0, 10.0, 0], [14.0, 10.0, 0]])
    target = FractureTargetMapd(num_classes=1)({"image": torch.zeros(1, 32, 32), "points": points})["target"]
    assert target[0, 2, 2] == 1.0 and target[0, 3, 2] == 1.0
    assert target.max() == 1.0


@pytest.mark.parametrize("annotations", [{}, {"boxes": np.zeros((0, 5)), "points": np.zeros((0, 3))}])
def test_items_without_annotations_give_zero_maps(annotations):
    target = FractureTargetMapd()({"image": torch.zeros(1, 32, 64), **annotations})["target"]
    assert target.shape == (2, 8, 16) and not target.any()


def test_round_trip_through_letterbox_and_back():
    item = FractureTargetMapd(num_classes=2, output_stride=STRIDE)(_letterboxed_item())
    geometry = LetterboxGeometry.from_tensor(item["geometry"])
    box_centre = (item["boxes"][0, :2] + item["boxes"][0, 2:4]) / 2
    point = item["points"][0, :2]
    for channel, grid_coord, original in ((0, box_centre, (25.0, 40.5)), (1, point, (70.5, 12.25))):
        # exact coordinates go there and back within a pixel
        np.testing.assert_allclose(geometry.to_original(grid_coord), original, atol=1.0)
        peak = _peak(item["target"][channel])
        peak_grid = (peak + 0.5) * STRIDE
        assert np.all(np.abs(peak_grid - grid_coord) <= STRIDE / 2)
        tolerance = STRIDE / 2 / geometry.scale + 1.0
        assert np.all(np.abs(geometry.to_original(peak_grid) - original) <= tolerance)


@pytest.mark.parametrize("spatial_axis", [0, 1])
def test_flipping_image_and_target_keeps_blob_on_the_fracture(spatial_axis):
    item = FractureTargetMapd(num_classes=2, output_stride=STRIDE)(_letterboxed_item())
    peak = _peak(item["target"][0])
    flipped = RandFlipd(keys=["image", "target"], prob=1.0, spatial_axis=spatial_axis)(item)
    flipped_peak = _peak(torch.as_tensor(flipped["target"][0]))
    expected = peak.copy()
    expected[spatial_axis] = item["target"].shape[1 + spatial_axis] - 1 - peak[spatial_axis]
    np.testing.assert_array_equal(flipped_peak, expected)
    # the map pixel of the peak covers the bright fracture patch of the flipped image
    window = tuple(slice(int(m) * STRIDE, (int(m) + 1) * STRIDE) for m in flipped_peak)
    assert torch.as_tensor(flipped["image"][0][window]).mean() > 0.5
    assert torch.as_tensor(item["image"][0][window]).mean() < 0.5


def test_grid_not_divisible_by_stride_raises():
    with pytest.raises(ValueError, match=r"\(30, 32\).*output_stride=4"):
        FractureTargetMapd()({"image": torch.zeros(1, 30, 32)})


def test_class_index_out_of_range_names_key():
    with pytest.raises(ValueError, match="'points'.*class index 2"):
        FractureTargetMapd(num_classes=2)({"image": torch.zeros(1, 32, 32), "points": np.array([[1.0, 1.0, 2]])})


def test_malformed_boxes_name_key():
    with pytest.raises(ValueError, match=r"'boxes' must have shape \(N, 5\)"):
        FractureTargetMapd()({"image": torch.zeros(1, 32, 32), "boxes": np.array([[1.0, 1.0, 4.0, 4.0]])})


@pytest.mark.parametrize(
    ("boxes", "points", "expected"),
    [
        (np.array([[8.0, 8.0, 16.0, 16.0, 1]]), None, [False, True]),
        (None, np.array([[20.0, 20.0, 0]]), [True, False]),
        (np.array([[8.0, 8.0, 16.0, 16.0, 1]]), np.array([[20.0, 20.0, 0]]), [True, True]),
        (None, None, [False, False]),
    ],
)
def test_annotated_mask_marks_types_with_a_region(boxes, points, expected):
    """Stage 2 tells a drawn type from a record-positive type without regions by this mask, not by the map."""
    item = {"image": torch.zeros(1, 32, 32), "boxes": boxes, "points": points}
    annotated = FractureTargetMapd(num_classes=2, output_stride=4)(item)["annotated"]
    assert annotated.dtype == torch.bool and annotated.tolist() == expected
