import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from cxrkd_monai.handlers.calibration_fitter import CalibrationFitter
from cxrkd_monai.handlers.froc_score import FROCScore
from cxrkd_monai.metrics.calibration_fitting import fit_calibration
from cxrkd_monai.transforms.calibration import Calibration, temperature_scale
from cxrkd_monai.transforms.geometry import LetterboxGeometry


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


# --- a detector's calibration: image-level points on the map maximum, lesion-level points on the FROC matches -------

FRACTURE_TYPES = ["rib_fracture", "clavicle_fracture"]
# A 64 x 64 image on a 64 x 64 grid (no padding), maps at stride 4: map pixel (i, j) is at original ((i, j) + 0.5) * 4.
SQUARE = LetterboxGeometry.fit((64, 64), (64, 64))


def _original(i: int, j: int) -> list[float]:
    return [(i + 0.5) * 4, (j + 0.5) * 4]


# Per validation image: rib label, rib map peaks {map pixel: value}, rib lesion points (map pixels). Clavicle maps are
# zero and no image has a clavicle fracture: that type gets no operating point.
HAND_BUILT_VALIDATION = [
    # found lesion 0.9, false positive 0.8
    (1, {(2, 2): 0.9, (10, 10): 0.8}, [(2, 2)]),
    # two lesions found at the same score 0.6, false positive 0.3
    (1, {(2, 2): 0.6, (10, 2): 0.6, (6, 12): 0.3}, [(2, 2), (10, 2)]),
    # no fracture: false positives 0.6 (tied with the lesions above) and 0.5
    (0, {(4, 4): 0.6, (12, 12): 0.5}, []),
    # a missed lesion (score 0) and a false positive 0.5 (tied with the one above)
    (1, {(8, 8): 0.5}, [(12, 4)]),
]


def _fracture_validation_engine(fitter_kwargs: dict, output_file: Path) -> tuple[Engine, CalibrationFitter]:
    maps = torch.zeros(len(HAND_BUILT_VALIDATION), 2, 16, 16)
    points = []
    for index, (_, peaks, lesions) in enumerate(HAND_BUILT_VALIDATION):
        for (i, j), value in peaks.items():
            maps[index, 0, i, j] = value
        points.append(np.array([[*_original(i, j), 0] for i, j in lesions], dtype=float).reshape(-1, 3))
    labels = torch.tensor([[label, 0.0] for label, _, _ in HAND_BUILT_VALIDATION])
    froc = FROCScore(FRACTURE_TYPES, point_radius=10.0)
    fitter = CalibrationFitter(
        FRACTURE_TYPES, output_file, 0.6, 0.6,
        # as the bundle: each type's map maximum against image_label, no label mask
        output_transform=lambda output: (output["pred"].flatten(2).amax(dim=-1), output["label"]),
        mask_transform=None, froc_metric=froc, **fitter_kwargs,
    )  # fmt: skip
    evaluator = Engine(lambda engine, batch: {"pred": batch["pred"], "label": batch["image_label"]})
    froc.attach(evaluator, "val_froc")

    @evaluator.on(Events.EPOCH_COMPLETED)
    def _compare_metrics(engine):
        engine.state.best_metric_epoch = engine.state.epoch

    fitter.attach(evaluator)
    batches = [
        {
            "pred": maps[part], "image_label": labels[part], "geometry": torch.stack([SQUARE.to_tensor()] * 2),
            "boxes": [None, None], "points": [points[i] for i in range(part.start, part.stop)],
        }  # fmt: skip
        for part in (slice(0, 2), slice(2, 4))
    ]
    evaluator.run(batches)
    return evaluator, fitter


def test_detector_calibration_on_a_hand_built_validation_set_including_ties(tmp_path):
    output_file = tmp_path / "models" / "teacher_calibration.json"
    _, fitter = _fracture_validation_engine({"fp_per_image_targets": [0.5, 0.9, 1, 2, 0.2]}, output_file)
    stored = Calibration.load(output_file)
    assert stored == fitter.calibration and stored.fitted_on["num_images"] == 4

    # image level, rib map maxima: positives 0.9, 0.6, 0.5; negative 0.6. Thresholds on the raw maximum:
    # youden: 0.9 (J 1/3; 0.6 gives 2/3 - 1, 0.5 gives 1 - 1); sensitivity >= 0.6: the highest threshold reaching it,
    # 0.6, where the tied positive and negative are called together (2/3, specificity 0); PPV >= 0.6: the lowest
    # threshold reaching it, 0.5 (3 of 4 calls right). Stored on the temperature-scaled probability.
    temperature = torch.tensor(stored.temperature, dtype=torch.float64)
    for rule, raw, sensitivity, specificity, ppv in (
        ("youden", 0.9, 1 / 3, 1.0, 1.0), ("sensitivity", 0.6, 2 / 3, 0.0, 2 / 3), ("ppv", 0.5, 1.0, 0.0, 0.75)
    ):  # fmt: skip
        point = stored.operating_points[rule]["rib_fracture"]
        calibrated = temperature_scale(torch.tensor([raw, 0.5], dtype=torch.float64), temperature)[0]
        # the raw maxima are float32 map values
        assert point["threshold"] == pytest.approx(float(calibrated), abs=1e-6), rule
        achieved = (point["sensitivity"], point["specificity"], point["ppv"])
        assert achieved == pytest.approx((sensitivity, specificity, ppv)), rule
        assert stored.operating_points[rule]["clavicle_fracture"] is None  # no clavicle fracture: no point

    # lesion level, rib: lesion scores 0.9, 0.6, 0.6, 0 (missed); false positives 0.8, 0.6, 0.5, 0.5, 0.3 on 4 images.
    # False positives per image at each detection score: 0.3 -> 5/4, 0.5 -> 4/4, 0.6 -> 2/4, 0.8 -> 1/4, 0.9 -> 0.
    # The lowest score within the rate: 0.5 -> 0.6 (the false positive tied with two lesions is called with them);
    # 0.9 -> 0.6 as well (the two false positives tied at 0.5 are not split); 1 -> 0.5; 2 -> 0.3; 0.2 -> 0.9.
    expected = {"0.5": (0.6, 0.75, 0.5), "0.9": (0.6, 0.75, 0.5), "1": (0.5, 0.75, 1.0), "2": (0.3, 0.75, 1.25),
                "0.2": (0.9, 0.25, 0.0)}  # fmt: skip
    assert stored.fp_per_image_targets == [0.5, 0.9, 1.0, 2.0, 0.2]
    for key, (threshold, sensitivity, fps_per_image) in expected.items():
        point = stored.lesion_operating_points[key]["rib_fracture"]
        assert point["threshold"] == pytest.approx(threshold, abs=1e-6), key  # float32 map values
        assert (point["sensitivity"], point["fps_per_image"]) == pytest.approx((sensitivity, fps_per_image)), key
        assert stored.lesion_operating_points[key]["clavicle_fracture"] is None  # no clavicle lesion
    assert stored.lesion_thresholds(1.0) == [pytest.approx(0.5), pytest.approx(math.nan, nan_ok=True)]


def test_lesion_operating_points_need_the_froc_metric_and_rates_together(tmp_path):
    with pytest.raises(ValueError, match="froc_metric and fp_per_image_targets"):
        CalibrationFitter(FRACTURE_TYPES, tmp_path / "c.json", froc_metric=FROCScore(FRACTURE_TYPES))
    with pytest.raises(ValueError, match="froc and fp_per_image_targets"):
        fit_calibration(np.array([[0.2], [0.8]]), np.array([[0], [1]]), None, ["a"], fp_per_image_targets=[1.0])
