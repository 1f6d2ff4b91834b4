import numpy as np
import pytest

from cxrkd_monai.metrics import expected_calibration_error


def test_hand_computed_ece():
    # two bins of width 0.5: bin 0 holds p = 0.1, 0.3 (mean 0.2) with labels 0, 1 (mean 0.5) -> |0.2 - 0.5| = 0.3
    # bin 1 holds p = 0.6, 0.9 (mean 0.75) with labels 1, 1 (mean 1.0) -> 0.25; equal weights: 0.275
    probabilities = np.array([[0.1, 0.6], [0.3, 0.9]])
    labels = np.array([[0.0, 1.0], [1.0, 1.0]])
    assert expected_calibration_error(probabilities, labels, num_bins=2) == pytest.approx(0.275)


def test_perfectly_calibrated_bins_give_zero_and_probability_one_lands_in_last_bin():
    probabilities = np.array([[1.0], [1.0], [0.0], [0.0]])
    labels = np.array([[1.0], [1.0], [0.0], [0.0]])
    assert expected_calibration_error(probabilities, labels, num_bins=10) == 0.0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="differ"):
        expected_calibration_error(np.zeros((2, 3)), np.zeros((2, 2)))


def test_masked_entries_are_left_out():
    # Hand computation over the observed entries only: p = 0.1 (y 0), 0.3 (y 1), 0.9 (y 1) in two bins:
    # bin 0: mean p 0.2, mean y 0.5 -> 2/3 * 0.3; bin 1: 0.9 vs 1 -> 1/3 * 0.1; ECE = 0.2 + 0.1 / 3.
    probabilities = np.array([[0.1, 0.6], [0.3, 0.9]])
    labels = np.array([[0.0, 1.0], [1.0, 1.0]])
    mask = np.array([[1.0, 0.0], [1.0, 1.0]])
    expected = 0.2 + 0.1 / 3
    assert expected_calibration_error(probabilities, labels, 2, mask) == pytest.approx(expected)
    hidden = labels.copy()
    hidden[0, 1] = np.nan
    assert expected_calibration_error(probabilities, hidden, 2, mask) == pytest.approx(expected)
