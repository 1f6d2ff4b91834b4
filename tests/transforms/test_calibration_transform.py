import json
import math
from pathlib import Path

import pytest
import torch

from cxrkd_monai.transforms.calibration import (
    CalibrateProbabilitiesd,
    Calibration,
    OperatingPointCalls,
    calibration_file_beside,
    fp_rate_key,
    temperature_scale,
)


def _calibration(temperature=(2.0, 0.5)):
    point = {"threshold": 0.6, "sensitivity": 1.0, "specificity": 1.0, "ppv": 1.0}
    return Calibration(
        class_names=["a", "b"],
        temperature=list(temperature),
        operating_points={"youden": {"a": point, "b": {**point, "threshold": 0.3}}, "ppv": {"a": point, "b": None}},
        sensitivity_target=0.9,
        ppv_target=0.5,
        fitted_on={"source": "validation", "num_images": 4},
    )


def test_temperature_scale_is_sigmoid_of_the_scaled_logit():
    p = torch.tensor([[0.2, 0.9]], dtype=torch.float64)
    expected = torch.sigmoid(torch.log(p / (1 - p)) / torch.tensor([2.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(temperature_scale(p, torch.tensor([2.0, 0.5])), expected)
    torch.testing.assert_close(temperature_scale(p, torch.ones(2)), p)


def test_stored_calibration_is_applied_with_the_chosen_operating_point(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text(_calibration().to_json())
    assert Calibration.load(path) == _calibration()
    item = {"pred_prob": torch.tensor([0.7, 0.4])}
    out = CalibrateProbabilitiesd("pred_prob", path, "youden")(item)
    # a: logit(0.7) / 2 -> 0.6046; b: logit(0.4) / 0.5 -> 0.3077
    expected = torch.sigmoid(torch.tensor([math.log(0.7 / 0.3) / 2.0, math.log(0.4 / 0.6) / 0.5]))
    torch.testing.assert_close(out["pred_calibrated"], expected)
    assert out["pred_threshold"].tolist() == pytest.approx([0.6, 0.3])
    assert out["pred_positive"].tolist() == [1.0, 1.0] and out["operating_point"] == "youden"
    assert out["pred_prob"] is item["pred_prob"]  # the uncalibrated probabilities stay
    ppv = CalibrateProbabilitiesd("pred_prob", path, "ppv")(item)
    assert ppv["pred_positive"][0] == 1.0 and math.isnan(ppv["pred_positive"][1])  # b has no PPV operating point


def test_without_a_calibration_file_probabilities_pass_through_at_one_half(tmp_path, caplog):
    out = CalibrateProbabilitiesd("pred_prob", tmp_path / "missing.json")({"pred_prob": torch.tensor([0.7, 0.4])})
    torch.testing.assert_close(out["pred_calibrated"], torch.tensor([0.7, 0.4]))
    assert out["pred_positive"].tolist() == [1.0, 0.0] and out["operating_point"] == "default"
    assert "No calibration file" in caplog.text


def test_bad_calibration_files_name_the_problem(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text(_calibration().to_json())
    with pytest.raises(KeyError, match="operating point 'f1' is not in the calibration"):
        CalibrateProbabilitiesd("pred_prob", path, "f1")
    with pytest.raises(ValueError, match="has 3 classes and the calibration 2"):
        CalibrateProbabilitiesd("pred_prob", path)({"pred_prob": torch.tensor([0.7, 0.4, 0.1])})
    path.write_text('{"class_names": ["a"], "temperature": [-1.0]}')
    with pytest.raises(ValueError, match="is not a calibration file: temperatures must be positive"):
        Calibration.load(path)


def test_each_checkpoint_has_its_own_calibration_file():
    # the bundle's model keeps the Model Zoo name; the fracture bundle's teacher and students trained into the same
    # folder keep theirs apart
    assert calibration_file_beside("run/models/model.pt") == str(Path("run/models/calibration.json"))
    assert calibration_file_beside("run/models/teacher.pt") == str(Path("run/models/teacher_calibration.json"))
    assert calibration_file_beside("run/models/model.ts") == str(Path("run/models/calibration.json"))
    assert fp_rate_key(1) == fp_rate_key(1.0) == "1" and fp_rate_key(0.5) == "0.5"


def test_lesion_operating_points_round_trip_and_give_per_type_thresholds(tmp_path):
    lesion_point = {"threshold": 0.07, "sensitivity": 0.8, "fps_per_image": 0.9}
    calibration = _calibration()
    # a classifier's file has no lesion-level keys
    assert "lesion_operating_points" not in json.loads(calibration.to_json())
    calibration.fp_per_image_targets = [0.5, 1.0]
    calibration.lesion_operating_points = {"0.5": {"a": None, "b": lesion_point}, "1": {"a": lesion_point, "b": None}}
    path = tmp_path / "calibration.json"
    path.write_text(calibration.to_json())
    assert Calibration.load(path) == calibration
    assert calibration.lesion_thresholds(1) == [0.07, pytest.approx(math.nan, nan_ok=True)]
    assert calibration.lesion_thresholds(0.5)[1] == 0.07
    with pytest.raises(KeyError, match="at 2 false positives per image is not in the calibration"):
        calibration.lesion_thresholds(2.0)


def test_operating_point_calls_broadcast_over_a_batch(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text(_calibration().to_json())
    calls = OperatingPointCalls(path, "youden")
    calibrated, threshold, positive = calls(torch.tensor([[0.7, 0.4], [0.5, 0.2]]))
    # a: logit / 2, b: logit / 0.5; thresholds 0.6 and 0.3
    expected = torch.sigmoid(torch.logit(torch.tensor([[0.7, 0.4], [0.5, 0.2]])) / torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(calibrated, expected)
    assert threshold.tolist() == [pytest.approx([0.6, 0.3])] * 2
    assert positive.tolist() == [[1.0, 1.0], [0.0, 0.0]]
