import csv

import numpy as np
import pytest
import torch
from monai.metrics.froc import compute_froc_curve_data, compute_froc_score

from cxrkd_monai.metrics.froc import FROCMetric, froc_curve_data, froc_curve_rows
from cxrkd_monai.transforms.detection import find_peaks, peaks_to_grid
from cxrkd_monai.transforms.geometry import Letterboxd, LetterboxGeometry
from cxrkd_monai.transforms.target_maps import FractureTargetMapd

NO_DETECTIONS = np.zeros((0, 3))


def _two_image_metric():
    """2 images, 3 rib lesions, 4 detections scored 0.9, 0.8, 0.7, 0.6."""
    metric = FROCMetric(num_classes=2, class_names=["rib", "clavicle"])
    metric.update(
        [np.array([[15, 15, 0.9], [30, 30, 0.8], [45, 45, 0.6]]), NO_DETECTIONS],
        boxes=np.array([[10, 10, 20, 20, 0], [40, 40, 50, 50, 0]]),
    )
    metric.update([np.array([[60, 60, 0.7]]), NO_DETECTIONS], boxes=np.array([[5, 5, 15, 15, 0]]))
    return metric


def test_hand_computed_curve_and_score():
    # TP scores (0.9, 0.6, missed), FP scores (0.8, 0.7); 2 images, 3 lesions.
    # threshold 0.6: 2 FP, 2 TP -> (1.0, 2/3); 0.7: 2 FP, 1 TP -> (1.0, 1/3);
    # 0.8: 1 FP, 1 TP -> (0.5, 1/3); 0.9: 0 FP, 1 TP -> (0.0, 1/3); then MONAI's end point (0, 0).
    rib = _two_image_metric().compute()["rib"]
    np.testing.assert_allclose(rib["fps_per_image"], [1.0, 1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(rib["sensitivity"], [2 / 3, 1 / 3, 1 / 3, 1 / 3, 0.0])
    expected_at = {0.125: 1 / 3, 0.25: 1 / 3, 0.5: 1 / 3, 1: 2 / 3, 2: 2 / 3, 4: 2 / 3, 8: 2 / 3}
    assert rib["sensitivity_at"] == pytest.approx(expected_at)
    assert rib["score"] == pytest.approx(11 / 21)
    assert rib["score"] == pytest.approx(
        compute_froc_score(rib["fps_per_image"], rib["sensitivity"], (0.125, 0.25, 0.5, 1, 2, 4, 8))
    )
    assert (rib["num_lesions"], rib["num_images"]) == (3, 2)


def test_class_without_lesions_is_nan():
    clavicle = _two_image_metric().compute()["clavicle"]
    assert clavicle["num_lesions"] == 0 and clavicle["num_images"] == 2
    assert np.isnan(clavicle["score"]) and all(np.isnan(v) for v in clavicle["sensitivity_at"].values())


def test_duplicate_hits_are_neither_tp_nor_fp():
    metric = FROCMetric(num_classes=1, fp_per_image=(1,))
    detections = np.array([[12, 12, 0.9], [18, 18, 0.5], [80, 80, 0.3]])
    metric.update([detections], boxes=np.array([[10, 10, 20, 20, 0]]))
    result = metric.compute()["0"]
    # a counted duplicate would give 2 FP/image at threshold 0.3
    np.testing.assert_allclose(result["fps_per_image"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(result["sensitivity"], [1.0, 1.0, 0.0])


def test_detection_hitting_two_lesions_finds_one_and_the_next_finds_the_other():
    metric = FROCMetric(num_classes=1)
    boxes = np.array([[0, 0, 20, 20, 0], [10, 0, 40, 20, 0]])
    metric.update([np.array([[15, 10, 0.9], [12, 10, 0.8]])], boxes=boxes)
    result = metric.compute()["0"]
    np.testing.assert_allclose(result["sensitivity"], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(result["fps_per_image"], [0.0, 0.0, 0.0])


def test_point_radius_hits():
    metric = FROCMetric(num_classes=1, point_radius=10.0)
    points = np.array([[50, 50, 0], [100, 100, 0]])
    # 9.9 px from the first point (hit), 10.5 px from the second (miss -> FP)
    metric.update([np.array([[50, 59.9, 0.8], [110.5, 100, 0.6]])], points=points)
    result = metric.compute()["0"]
    np.testing.assert_allclose(result["fps_per_image"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(result["sensitivity"], [0.5, 0.5, 0.0])
    assert result["num_lesions"] == 2


def test_boxes_take_precedence_over_points_of_the_same_class():
    metric = FROCMetric(num_classes=2, point_radius=5.0)
    boxes = np.array([[10, 10, 30, 30, 0]])
    points = np.array([[20, 20, 0], [70, 70, 1]])
    # (28, 28) is inside the rib box but 11 px from the rib point; the clavicle has only a point
    metric.update([np.array([[28, 28, 0.7]]), np.array([[72, 70, 0.4]])], boxes=boxes, points=points)
    result = metric.compute()
    assert result["0"]["num_lesions"] == 1 and result["0"]["sensitivity"][0] == 1.0
    assert result["1"]["num_lesions"] == 1 and result["1"]["sensitivity"][0] == 1.0


def test_reset_and_tensor_input():
    metric = _two_image_metric()
    metric.reset()
    metric.update([torch.tensor([[15.0, 15.0, 0.9]]), torch.zeros(0, 3)], boxes=torch.tensor([[10, 10, 20, 20, 0]]))
    rib = metric.compute()["rib"]
    assert (rib["num_lesions"], rib["num_images"]) == (1, 1)
    assert rib["score"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"detections": [NO_DETECTIONS]}, "one array per class"),
        ({"boxes": np.array([[1, 1, 2, 2, 5]])}, "'boxes' has class index 5.0"),
        ({"points": np.array([[1, 1]])}, r"'points' must have shape \(N, 3\)"),
        ({"detections": [np.array([[1, 0.5]]), NO_DETECTIONS]}, r"'detections\[0\]'"),
    ],
)
def test_bad_update_raises(kwargs, message):
    metric = FROCMetric(num_classes=2)
    kwargs = {"detections": [NO_DETECTIONS, NO_DETECTIONS], **kwargs}
    with pytest.raises(ValueError, match=message):
        metric.update(**kwargs)


def test_invalid_construction_raises():
    with pytest.raises(ValueError, match="class_names"):
        FROCMetric(num_classes=2, class_names=["rib"])
    with pytest.raises(ValueError, match="fp_per_image"):
        FROCMetric(fp_per_image=(0, 1))


def test_curve_rows_write_as_csv(tmp_path):
    rows = froc_curve_rows(_two_image_metric().compute())
    assert len(rows) == 5 and rows[0] == {"class": "rib", "fps_per_image": 1.0, "sensitivity": pytest.approx(2 / 3)}
    path = tmp_path / "froc.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with path.open() as handle:
        read = list(csv.DictReader(handle))
    assert [row["class"] for row in read] == ["rib"] * 5
    assert float(read[3]["fps_per_image"]) == 0.0


def _two_blobs_and_a_plateau():
    prob = torch.zeros(2, 16, 16)
    prob[0, 2:5, 3:6] = 0.5
    prob[0, 3, 4] = 0.9
    prob[0, 9:12, 11:14] = 0.3
    prob[0, 10, 12] = 0.7
    prob[0, 6:8, 0] = 0.4  # a two-pixel plateau on the border
    prob[0, 14, 14] = 0.04  # below the threshold
    prob[1, 8, 8] = 0.2
    return prob


def test_find_peaks_on_blobs_and_plateau():
    peaks = find_peaks(_two_blobs_and_a_plateau(), threshold=0.05)
    np.testing.assert_allclose(peaks[0], [[3, 4, 0.9], [10, 12, 0.7], [6.5, 0, 0.4]], rtol=1e-6)
    np.testing.assert_allclose(peaks[1], [[8, 8, 0.2]], rtol=1e-6)


def test_find_peaks_threshold_and_max_peaks():
    prob = _two_blobs_and_a_plateau()
    peaks = find_peaks(prob, threshold=0.5, max_peaks=1)
    np.testing.assert_allclose(peaks[0], [[3, 4, 0.9]], rtol=1e-6)
    assert peaks[1].shape == (0, 3)
    assert len(find_peaks(prob, threshold=0.01)[0]) == 4


def test_find_peaks_larger_kernel_suppresses_nearby_peak():
    prob = torch.zeros(1, 12, 12)
    prob[0, 4, 4] = 0.9
    prob[0, 4, 6] = 0.6
    assert len(find_peaks(prob, nms_kernel_size=3)[0]) == 2
    np.testing.assert_allclose(find_peaks(prob, nms_kernel_size=5)[0], [[4, 4, 0.9]], rtol=1e-6)
    with pytest.raises(ValueError, match="nms_kernel_size=4"):
        find_peaks(prob, nms_kernel_size=4)


def test_peaks_to_grid():
    peaks = [np.array([[3.0, 4.0, 0.9]]), np.zeros((0, 3))]
    grid = peaks_to_grid(peaks, output_stride=4)
    np.testing.assert_allclose(grid[0], [[14.0, 18.0, 0.9]])
    assert grid[1].shape == (0, 3)
    np.testing.assert_allclose(peaks_to_grid(np.array([[0.0, 6.5, 0.4]]), 8), [[4.0, 56.0, 0.4]])


def test_target_map_peaks_score_perfectly_against_their_own_annotations():
    image = torch.zeros(1, 100, 60)
    boxes = np.array([[20.0, 35.0, 30.0, 46.0, 0], [60.0, 5.0, 90.0, 20.0, 0]])
    points = np.array([[40.0, 30.0, 1]])
    item = Letterboxd("image", spatial_size=(64, 64), box_keys="boxes", point_keys="points")(
        {"image": image, "boxes": boxes, "points": points}
    )
    target = FractureTargetMapd(num_classes=2, output_stride=4)(item)["target"]
    geometry = LetterboxGeometry.from_tensor(item["geometry"])
    detections = []
    for class_peaks in peaks_to_grid(find_peaks(target, threshold=0.5), output_stride=4):
        class_peaks[:, :2] = geometry.to_original(class_peaks[:, :2])
        detections.append(class_peaks)
    metric = FROCMetric(num_classes=2, point_radius=8.0)
    metric.update(detections, boxes=boxes, points=points)
    result = metric.compute()
    for name, lesions in (("0", 2), ("1", 1)):
        assert result[name]["num_lesions"] == lesions
        assert result[name]["score"] == 1.0
        assert result[name]["fps_per_image"].max() == 0.0


def test_min_hit_radius_reaches_past_point_radius_and_tiny_boxes():
    # rib: a 4 x 4 box centred at (102, 102) and a detection 5 px from its centre, outside the box;
    # clavicle: a point at (50, 50) and a detection 12 px away, beyond point_radius = 10.
    detections = [np.array([[105.0, 106.0, 0.9]]), np.array([[62.0, 50.0, 0.8]])]
    boxes = np.array([[100.0, 100.0, 104.0, 104.0, 0]])
    points = np.array([[50.0, 50.0, 1]])
    strict = FROCMetric(num_classes=2, point_radius=10.0)
    strict.update(detections, boxes=boxes, points=points)
    assert [strict.compute()[name]["score"] for name in ("0", "1")] == [0.0, 0.0]
    tolerant = FROCMetric(num_classes=2, point_radius=10.0)
    tolerant.update(detections, boxes=boxes, points=points, min_hit_radius=12.0)
    assert [tolerant.compute()[name]["score"] for name in ("0", "1")] == [1.0, 1.0]
    # a detection farther than both radii is still a false positive
    far = FROCMetric(num_classes=2, point_radius=10.0)
    far.update([NO_DETECTIONS, np.array([[63.0, 50.0, 0.8]])], points=points, min_hit_radius=12.0)
    assert far.compute()["1"]["score"] == 0.0


def test_negative_min_hit_radius_is_named():
    with pytest.raises(ValueError, match="min_hit_radius"):
        FROCMetric(num_classes=1).update([NO_DETECTIONS], min_hit_radius=-1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_froc_curve_data_equals_monais_per_threshold_count(seed):
    """Scores with ties, repeated values and missed lesions (0): the same arrays as MONAI's quadratic counting."""
    rng = np.random.default_rng(seed)
    fp_probs = np.append(np.round(rng.random(300), 2), 0.0)  # rounding makes ties between and within the arrays
    tp_probs = np.concatenate([np.round(rng.random(40), 2), np.zeros(5)])
    expected = compute_froc_curve_data(fp_probs, tp_probs, num_targets=45, num_images=30)
    found = froc_curve_data(fp_probs, tp_probs, num_targets=45, num_images=30)
    for value, reference in zip(found, expected):
        np.testing.assert_array_equal(value, reference)
