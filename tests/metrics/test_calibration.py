import numpy as np
import pytest
import torch
from ignite.engine import Engine

from cxrkd_monai.metrics import MultiLabelECE, expected_calibration_error


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


def test_handler_matches_function_over_batches():
    torch.manual_seed(0)
    p, y = torch.rand(30, 4), (torch.rand(30, 4) > 0.5).float()
    engine = Engine(lambda e, batch: batch)
    MultiLabelECE(num_bins=5).attach(engine, "ece")
    engine.run([(p[:10], y[:10]), (p[10:], y[10:])])
    assert engine.state.metrics["ece"] == pytest.approx(expected_calibration_error(p, y, 5))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="differ"):
        expected_calibration_error(np.zeros((2, 3)), np.zeros((2, 2)))
