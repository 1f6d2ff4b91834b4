import json

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from cxrkd_monai.handlers.calibration_fitter import CalibrationFitter, fit_calibration
from cxrkd_monai.transforms.calibration import Calibration


def _validation_batches(seed=0, num_batches=4, batch_size=50):
    """Decollated validator batches: over-confident probabilities (reported logit = 2 x true logit), masks."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(num_batches):
        logits = rng.normal(0, 1.5, (batch_size, 2))
        labels = (rng.random(logits.shape) < 1 / (1 + np.exp(-logits))).astype(np.float32)
        masks = (rng.random(logits.shape) > 0.2).astype(np.float32)
        reported = (1 / (1 + np.exp(-2 * logits))).astype(np.float32)
        batches.append(
            [
                {"pred_prob": torch.tensor(p), "label": torch.tensor(y), "label_mask": torch.tensor(m)}
                for p, y, m in zip(reported, labels, masks)
            ]
        )
    return batches


def _stack(batches, key):
    return torch.stack([item[key] for batch in batches for item in batch])


def test_fits_on_the_validations_that_set_a_new_best_and_writes_beside_the_model(tmp_path):
    epochs = [_validation_batches(seed) for seed in range(3)]
    evaluator = Engine(lambda engine, batch: batch)  # the decollated items are their own output
    fitter = CalibrationFitter(["a", "b"], tmp_path / "models" / "calibration.json", 0.8, 0.6)
    best_epochs = {1, 3}  # validation 2 does not improve the key metric: its model is not saved

    @evaluator.on(Events.EPOCH_COMPLETED)
    def _compare_metrics(engine):
        engine.state.best_metric_epoch = engine.state.epoch if engine.state.epoch in best_epochs else 1

    fitter.attach(evaluator)
    written = []
    for epoch, batches in enumerate(epochs, start=1):
        # as monai's Evaluator.run(global_epoch): one epoch numbered like the trainer's
        evaluator.state.max_epochs, evaluator.state.epoch, evaluator.state.iteration = epoch, epoch - 1, 0
        evaluator.run(batches)
        written.append(json.loads((tmp_path / "models" / "calibration.json").read_text()))
    assert written[1] == written[0] and written[2] != written[0]

    last = epochs[2]
    expected = fit_calibration(
        _stack(last, "pred_prob"), _stack(last, "label"), _stack(last, "label_mask"), ["a", "b"], 0.8, 0.6
    )
    stored = Calibration.load(tmp_path / "models" / "calibration.json")
    assert stored.temperature == pytest.approx(expected.temperature, rel=1e-9)
    assert stored.operating_points == expected.operating_points
    assert stored.fitted_on["num_images"] == 200 and (stored.sensitivity_target, stored.ppv_target) == (0.8, 0.6)
    # reported logits are twice the true ones: the fitted temperatures undo that
    assert stored.temperature == pytest.approx([2.0, 2.0], rel=0.25)
    assert all(
        stored.fitted_on["nll_calibrated"][c] < stored.fitted_on["nll_uncalibrated"][c] for c in ("a", "b")
    )
    youden = stored.operating_points["youden"]["a"]
    assert set(youden) == {"threshold", "sensitivity", "specificity", "ppv"}
