"""Probability-map file names (unique per image path, readable stem), and the calls at the operating points."""

import hashlib
import math
from pathlib import Path

import pytest
import torch
from monai.data import MetaTensor

from cxrkd_monai.handlers.fracture_prediction_recorder import FracturePredictionRecorder, map_file_name
from cxrkd_monai.transforms.calibration import Calibration
from cxrkd_monai.transforms.geometry import LetterboxGeometry


def test_same_file_name_in_two_folders_gives_two_map_names():
    chexpert = map_file_name("/data/chexpert/patient1/study1/view1_frontal.jpg")
    mimic = map_file_name("/data/mimic/p10/s5/view1_frontal.jpg")
    assert chexpert != mimic
    assert chexpert.startswith("view1_frontal_") and chexpert.endswith("_prob.nii.gz")
    digest = hashlib.sha1(b"/data/chexpert/patient1/study1/view1_frontal.jpg").hexdigest()[:8]
    assert chexpert == f"view1_frontal_{digest}_prob.nii.gz"


def test_stem_drops_only_the_image_suffix():
    assert map_file_name("/d/p0001.s01.nii.gz").startswith("p0001.s01_")
    assert map_file_name("/d/scan.DCM").startswith("scan_")
    # a relative path is hashed as the absolute path it names, so the name does not depend on how it was listed
    assert map_file_name("images/a.png") == map_file_name(str(Path.cwd() / "images" / "a.png"))


# --- calls at the stored operating points ------------------------------------------------------------------------

CLASSES = ["rib_fracture", "clavicle_fracture"]
SQUARE = LetterboxGeometry.fit((64, 64), (64, 64))


def _calibrated_record(tmp_path, calibration: Calibration | None, **recorder_options) -> dict:
    """One 64 x 64 image, maps at stride 4: rib peaks 0.6 and 0.3, clavicle peak 0.2."""
    maps = torch.zeros(1, 2, 16, 16)
    maps[0, 0, 2, 2], maps[0, 0, 10, 10], maps[0, 1, 6, 6] = 0.6, 0.3, 0.2
    path = tmp_path / "calibration.json"
    if calibration is not None:
        path.write_text(calibration.to_json())
    image = MetaTensor(torch.zeros(1, 1, 64, 64), meta={"filename_or_obj": ["/data/a.png"]})
    recorder = FracturePredictionRecorder(CLASSES, calibration_file=path, **recorder_options)
    (record,) = recorder({"image": image, "geometry": SQUARE.to_tensor()[None]}, {"pred": maps})
    return record


def _point(threshold):
    return {"threshold": threshold, "sensitivity": 0.8, "specificity": 0.7, "ppv": 0.5}


CALIBRATION = Calibration(
    class_names=CLASSES,
    temperature=[2.0, 1.0],
    operating_points={"youden": {"rib_fracture": _point(0.55), "clavicle_fracture": None}},
    fp_per_image_targets=[1.0],
    lesion_operating_points={
        "1": {"rib_fracture": {"threshold": 0.5, "sensitivity": 0.75, "fps_per_image": 1.0}, "clavicle_fracture": None}
    },
)


def test_recorder_calls_images_and_points_at_the_stored_operating_points(tmp_path):
    record = _calibrated_record(tmp_path, CALIBRATION, keep_uncalled_detections=True)
    # rib: map maximum 0.6, logit / 2 -> sigmoid(0.2027) = 0.5505 >= 0.55; clavicle has no image-level point
    assert record["calibrated_rib_fracture"] == pytest.approx(1 / (1 + math.exp(-math.log(0.6 / 0.4) / 2)), abs=1e-6)
    assert (record["threshold_rib_fracture"], record["positive_rib_fracture"]) == (pytest.approx(0.55), 1.0)
    assert record["threshold_clavicle_fracture"] is None and record["positive_clavicle_fracture"] is None
    assert (record["operating_point"], record["lesion_operating_point"]) == ("youden", 1.0)
    assert record["lesion_threshold_rib_fracture"] == 0.5 and record["lesion_threshold_clavicle_fracture"] is None
    called = {(d["class"], round(d["score"], 4)): d["called"] for d in record["detections"]}
    # rib 0.6 >= 0.5 called, rib 0.3 not; clavicle has no lesion-level point: nothing called
    assert called == {("rib_fracture", 0.6): True, ("rib_fracture", 0.3): False, ("clavicle_fracture", 0.2): False}

    only_called = _calibrated_record(tmp_path, CALIBRATION, keep_uncalled_detections=False)
    assert [(d["class"], d["called"]) for d in only_called["detections"]] == [("rib_fracture", True)]
    assert only_called["detections"][0]["x"] == pytest.approx(10.0) and only_called["detections"][0]["y"] == 10.0


def test_recorder_without_a_calibration_file_calls_at_the_defaults(tmp_path, caplog):
    record = _calibrated_record(tmp_path, None, keep_uncalled_detections=False, peak_threshold=0.05)
    assert "No calibration file" in caplog.text
    assert (record["operating_point"], record["lesion_operating_point"]) == ("default", "default")
    assert record["calibrated_rib_fracture"] == pytest.approx(0.6) and record["positive_rib_fracture"] == 1.0
    assert record["positive_clavicle_fracture"] == 0.0  # 0.2 < 0.5
    assert record["lesion_threshold_rib_fracture"] == 0.05
    assert len(record["detections"]) == 3 and all(d["called"] for d in record["detections"])


def test_recorder_names_a_lesion_rate_the_calibration_lacks(tmp_path):
    with pytest.raises(KeyError, match="at 2 false positives per image"):
        _calibrated_record(tmp_path, CALIBRATION, lesion_operating_point=2.0)
