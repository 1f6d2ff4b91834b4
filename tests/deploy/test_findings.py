"""The fracture findings text of the Deploy app's SR, from hand-made prediction records (no Deploy SDK needed)."""

import json
from dataclasses import asdict

from cxrkd_monai.deploy.findings import FindingCall, fracture_calls, fracture_findings, vkd_calls

DETECTIONS = [
    {"class": "rib_fracture", "x": 412.5, "y": 230.0, "score": 0.0931, "called": True},
    {"class": "rib_fracture", "x": 100.0, "y": 80.25, "score": 0.0402, "called": False},
]
CALIBRATION = {
    "fitted_on": {"source": "validation", "num_images": 40},
    "operating_points": {
        "youden": {
            "rib_fracture": {"threshold": 0.531, "sensitivity": 0.85, "specificity": 0.8, "ppv": 0.62},
            "clavicle_fracture": None,
        }
    },
    "lesion_operating_points": {
        "1": {
            "rib_fracture": {"threshold": 0.0731, "sensitivity": 0.85, "fps_per_image": 0.94},
            "clavicle_fracture": None,
        }
    },
}
RECORD = {
    "image": "/data/instance.dcm",
    "rib_fracture_probability": 0.0931,
    "clavicle_fracture_probability": 0.021,
    "calibrated_rib_fracture": 0.612,
    "threshold_rib_fracture": 0.531,
    "positive_rib_fracture": 1.0,
    "calibrated_clavicle_fracture": 0.021,
    "threshold_clavicle_fracture": None,
    "positive_clavicle_fracture": None,
    "operating_point": "youden",
    "lesion_operating_point": 1.0,
    "lesion_threshold_rib_fracture": 0.0731,
    "lesion_threshold_clavicle_fracture": None,
    "detections": DETECTIONS,
}


def test_calibrated_findings_name_both_operating_points_their_thresholds_and_what_they_mean():
    assert fracture_findings(RECORD, CALIBRATION).splitlines() == [
        "Operating point: youden (image-level thresholds on the temperature-scaled map maximum, chosen on validation)",
        "Findings: rib_fracture",
        "rib_fracture: positive (probability 0.0931, calibrated 0.6120, threshold 0.5310; on validation sensitivity "
        "0.85, specificity 0.80, PPV 0.62)",
        "clavicle_fracture: no operating point (probability 0.0210)",
        "Points: detections called at 1 false positives per image on validation (a score threshold per type)",
        "rib_fracture points: score >= 0.0731 (on validation lesion sensitivity 0.85, 0.94 false positives per image)",
        "clavicle_fracture points: none called (no lesion-level operating point)",
        # the uncalled detection below the lesion threshold is left out
        "rib_fracture point: x 412.5, y 230.0, score 0.0931",
    ]


def test_a_negative_call_says_so():
    negative = {**RECORD, "calibrated_rib_fracture": 0.4, "positive_rib_fracture": 0.0}
    lines = fracture_findings(negative, CALIBRATION).splitlines()
    assert lines[1] == "Findings: none"
    assert lines[2].startswith("rib_fracture: negative (probability 0.0931, calibrated 0.4000, threshold 0.5310;")


def test_without_calibration_only_points_at_the_default_threshold_are_listed():
    record = {key: RECORD[key] for key in ("image", "rib_fracture_probability", "clavicle_fracture_probability")}
    record["detections"] = [{k: v for k, v in d.items() if k != "called"} for d in DETECTIONS]
    assert fracture_findings(record, None, decision_threshold=0.05).splitlines() == [
        "Operating point: probability >= 0.05 (no calibration in the bundle)",
        "Findings: rib_fracture",
        "rib_fracture: probability 0.0931",
        "clavicle_fracture: probability 0.0210",
        # the map peak scoring 0.0402 is below the operating point: no point of a report that calls nothing there
        "rib_fracture point: x 412.5, y 230.0, score 0.0931",
    ]
    assert "point: x" not in fracture_findings(record, None, decision_threshold=0.5)


def test_fracture_calls_take_the_calibrated_calls_and_called_points():
    assert fracture_calls(RECORD) == [
        FindingCall("rib_fracture", 0.0931, True, ((412.5, 230.0, 0.0931),)),
        # no operating point for the type: no call, and no point called
        FindingCall("clavicle_fracture", 0.021, None),
    ]


def test_fracture_calls_without_calibration_threshold_probabilities_and_points_alike():
    record = {**{key: RECORD[key] for key in ("rib_fracture_probability", "clavicle_fracture_probability")}}
    record["detections"] = [{k: v for k, v in d.items() if k != "called"} for d in DETECTIONS]
    assert fracture_calls(record, decision_threshold=0.04) == [
        FindingCall("rib_fracture", 0.0931, True, ((412.5, 230.0, 0.0931), (100.0, 80.25, 0.0402))),
        FindingCall("clavicle_fracture", 0.021, False),
    ]
    assert fracture_calls(record, decision_threshold=0.0931)[0].points == ((412.5, 230.0, 0.0931),)
    assert [call.present for call in fracture_calls(record)] == [False, False]


def test_vkd_calls_use_the_record_calls_when_calibrated_and_the_threshold_otherwise():
    record = {"image": "x.dcm", "prob_Edema": 0.7, "std_Edema": 0.1, "prob_Cardiomegaly": 0.2, "std_Cardiomegaly": 0.0}
    assert vkd_calls(record) == [FindingCall("Edema", 0.7, True), FindingCall("Cardiomegaly", 0.2, False)]
    assert [call.present for call in vkd_calls(record, decision_threshold=0.1)] == [True, True]
    calibrated = {**record, "operating_point": "youden", "positive_Edema": 0.0, "positive_Cardiomegaly": None}
    assert vkd_calls(calibrated) == [FindingCall("Edema", 0.7, False), FindingCall("Cardiomegaly", 0.2, None)]


def test_a_call_survives_its_json_form():
    call = fracture_calls(RECORD)[0]
    assert FindingCall.from_dict(json.loads(json.dumps(asdict(call)))) == call
