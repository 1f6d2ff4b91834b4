import numpy as np
import pytest
import torch

from cxrkd_monai.metrics.temperature_scaling import binary_nll, fit_temperature
from cxrkd_monai.transforms.calibration import temperature_scale


def _miscalibrated(temperatures, num_images=4000, seed=0):
    """Labels drawn from sigmoid(logits); the model reports sigmoid(logits * T), over-confident where T > 1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (num_images, len(temperatures)))
    labels = (rng.random(logits.shape) < 1 / (1 + np.exp(-logits))).astype(float)
    reported = 1 / (1 + np.exp(-logits * np.asarray(temperatures)))
    return reported, labels


def test_fit_recovers_known_temperatures_and_lowers_validation_nll():
    reported, labels = _miscalibrated([0.5, 1.0, 3.0])
    fit = fit_temperature(reported, labels)
    # 4000 Bernoulli labels per class pin the maximum-likelihood temperature to within a few percent
    np.testing.assert_allclose(fit.temperature, [0.5, 1.0, 3.0], rtol=0.08)
    assert fit.fitted.all()
    assert fit.nll_after[0] < fit.nll_before[0] - 0.01 and fit.nll_after[2] < fit.nll_before[2] - 0.05
    assert fit.nll_after[1] <= fit.nll_before[1] + 1e-9  # already calibrated: nothing to gain, nothing lost
    # the optimum: no temperature nearby does better (a direct scan of the NLL)
    p, y, seen = torch.from_numpy(reported), torch.from_numpy(labels), torch.ones(labels.shape, dtype=torch.bool)
    for factor in (0.97, 1.03):
        nudged = binary_nll(temperature_scale(p, torch.from_numpy(fit.temperature * factor)), y, seen)
        assert (nudged.numpy() >= fit.nll_after - 1e-9).all()


def test_calibration_holds_out_of_sample_and_keeps_the_ranking():
    reported, labels = _miscalibrated([2.5], seed=1)
    held_out, held_out_labels = _miscalibrated([2.5], seed=2)
    fit = fit_temperature(reported, labels)
    calibrated = temperature_scale(torch.from_numpy(held_out), torch.from_numpy(fit.temperature))
    seen = torch.ones(held_out.shape, dtype=torch.bool)
    before = binary_nll(torch.from_numpy(held_out), torch.from_numpy(held_out_labels), seen)
    after = binary_nll(calibrated, torch.from_numpy(held_out_labels), seen)
    assert after.item() < before.item() - 0.05
    # monotone: sorted by the reported probability, the calibrated one never decreases (saturated ones may tie)
    assert (np.diff(calibrated.numpy()[np.argsort(held_out[:, 0]), 0]) >= 0).all()


def test_masked_labels_are_left_out_and_one_valued_classes_keep_temperature_one():
    reported, labels = _miscalibrated([2.0, 2.0], num_images=2000)
    mask = np.ones_like(labels)
    mask[:1000, 0] = 0
    labels[:1000, 0] = np.nan  # unobserved labels may hold anything
    labels[:, 1] = 1.0  # one label value only: the NLL falls without bound as T -> 0; no temperature is fitted
    fit = fit_temperature(reported, labels, mask)
    alone = fit_temperature(reported[1000:, :1], labels[1000:, :1])
    assert fit.temperature[0] == pytest.approx(alone.temperature[0], rel=1e-6)
    assert fit.temperature[1] == 1.0 and not fit.fitted[1]
