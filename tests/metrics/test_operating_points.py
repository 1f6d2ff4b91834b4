
import numpy as np
import pytest

from cxrkd_monai.metrics.froc import froc_curve_data
from cxrkd_monai.metrics.operating_points import (
    select_lesion_operating_point,
    select_operating_point,
    select_operating_points,
)

# Hand-built class: scores in descending order with their labels.
#   threshold  TP FP  sensitivity  specificity  PPV    Youden J
#   0.95        1  0  1/4          1            1      0.25
#   0.90        1  1  1/4          3/4          1/2    0.00
#   0.80        2  1  2/4          3/4          2/3    0.25
#   0.70        3  1  3/4          3/4          3/4    0.50
#   0.60        3  2  3/4          2/4          3/5    0.25
#   0.50        4  2  1            2/4          4/6    0.50
#   0.40        4  3  1            1/4          4/7    0.25
#   0.30        4  4  1            0            1/2    0.00
SCORES = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
LABELS = np.array([1, 0, 1, 1, 0, 1, 0, 0])


def test_youden_takes_the_highest_of_tied_thresholds():
    point = select_operating_point(SCORES, LABELS, "youden")
    assert point.threshold == 0.7  # J = 0.5 at 0.7 and at 0.5: the higher one
    assert (point.sensitivity, point.specificity, point.ppv) == (0.75, 0.75, 0.75)


@pytest.mark.parametrize(
    "target, threshold", [(0.75, 0.7), (0.7, 0.7), (0.76, 0.5), (1.0, 0.5), (0.25, 0.95), (0.5, 0.8)]
)
def test_sensitivity_target_takes_the_highest_threshold_reaching_it(target, threshold):
    point = select_operating_point(SCORES, LABELS, "sensitivity", sensitivity_target=target)
    assert point.threshold == threshold and point.sensitivity >= target


@pytest.mark.parametrize(
    "target, threshold", [(0.6, 0.5), (2 / 3, 0.5), (0.7, 0.7), (0.75, 0.7), (0.8, 0.95), (0.5, 0.3), (1.0, 0.95)]
)
def test_ppv_target_takes_the_lowest_threshold_reaching_it(target, threshold):
    point = select_operating_point(SCORES, LABELS, "ppv", ppv_target=target)
    assert point.threshold == threshold and point.ppv >= target - 1e-12


def test_tied_scores_form_one_threshold_and_unreachable_targets_give_none():
    # two images share 0.6, one positive and one negative: calling at 0.6 calls both
    point = select_operating_point(np.array([0.9, 0.6, 0.6, 0.2]), np.array([0, 1, 0, 1]), "sensitivity", 0.5)
    assert point.threshold == 0.6 and (point.sensitivity, point.specificity, point.ppv) == (0.5, 0.0, 1 / 3)
    assert select_operating_point(np.array([0.9, 0.1]), np.array([0, 1]), "ppv", ppv_target=0.9) is None
    assert select_operating_point(np.array([0.9, 0.1]), np.array([1, 1]), "youden") is None


def test_every_rule_per_class_over_observed_labels_only():
    scores = np.stack([SCORES, SCORES[::-1]], axis=1)
    labels = np.stack([LABELS, np.array([1, 0, 1, 1, 0, 1, 0, 0])], axis=1).astype(float)
    mask = np.ones_like(labels)
    mask[0, 0] = 0  # the top-scored positive of class "a" is unobserved: Youden moves
    points = select_operating_points(scores, labels, mask, ["a", "b"], sensitivity_target=0.75, ppv_target=0.75)
    assert set(points) == {"youden", "sensitivity", "ppv"}
    # class a without its first image: positives 0.8, 0.7, 0.5; negatives 0.9, 0.6, 0.4, 0.3
    # J at 0.8: 1/3 + 3/4 - 1; at 0.7: 2/3 + 3/4 - 1; at 0.5: 1 + 2/4 - 1 (the largest)
    assert points["youden"]["a"].threshold == 0.5
    assert points["youden"]["a"].specificity == 0.5 and points["youden"]["a"].sensitivity == 1.0
    # class b: positives 0.8, 0.6, 0.5, 0.3; three of four are found from the third-highest positive, 0.5
    assert points["sensitivity"]["b"].threshold == 0.5
    assert (points["sensitivity"]["b"].sensitivity, points["sensitivity"]["b"].specificity) == (0.75, 0.25)
    with pytest.raises(ValueError, match="rule must be one of"):
        select_operating_point(SCORES, LABELS, "f1")
    with pytest.raises(ValueError, match="ppv_target must lie in"):
        select_operating_point(SCORES, LABELS, "ppv", ppv_target=75)


def test_lesion_operating_point_is_the_lowest_score_within_the_false_positive_rate():
    # 4 images; lesions found at 0.9 and 0.6 (twice), one missed; false positives 0.8, 0.6, 0.5, 0.5, 0.3
    lesions, false_positives = np.array([0.9, 0.6, 0.6, 0.0]), np.array([0.8, 0.6, 0.5, 0.5, 0.3])
    # false positives per image from each score: 0.3 -> 5/4, 0.5 -> 1, 0.6 -> 1/2, 0.8 -> 1/4, 0.9 -> 0
    for rate, expected in ((2.0, (0.3, 0.75, 1.25)), (1.0, (0.5, 0.75, 1.0)), (0.99, (0.6, 0.75, 0.5)),
                           (0.25, (0.8, 0.25, 0.25)), (0.1, (0.9, 0.25, 0.0))):  # fmt: skip
        point = select_lesion_operating_point(lesions, false_positives, 4, rate)
        assert (point.threshold, point.sensitivity, point.fps_per_image) == pytest.approx(expected), rate
    # the point lies on the FROC curve of the same matches
    fps_per_image, sensitivity = froc_curve_data(np.append(false_positives, 0.0), lesions, 4, 4)
    point = select_lesion_operating_point(lesions, false_positives, 4, 1.0)
    assert (point.fps_per_image, point.sensitivity) in set(zip(fps_per_image.tolist(), sensitivity.tolist()))


def test_lesion_operating_point_is_none_out_of_reach_or_without_lesions():
    # the highest score is two tied false positives on one image: no score keeps them under 1 per image
    assert select_lesion_operating_point(np.array([0.2]), np.array([0.9, 0.9]), 1, 1.0) is None
    assert select_lesion_operating_point(np.array([]), np.array([0.9]), 1, 1.0) is None
    assert select_lesion_operating_point(np.array([0.0]), np.array([]), 1, 1.0) is None  # no detection at all
    # every detection within the rate: the lowest one, all lesions it finds
    point = select_lesion_operating_point(np.array([0.7, 0.0]), np.array([0.2]), 2, 1.0)
    assert (point.threshold, point.sensitivity, point.fps_per_image) == (0.2, 0.5, 0.5)
    with pytest.raises(ValueError, match="fp_per_image"):
        select_lesion_operating_point(np.array([0.7]), np.array([0.2]), 2, 0.0)
