"""The fracture findings text of the Deploy app's SR, from hand-made prediction records (no Deploy SDK needed)."""

from cxrkd_monai.deploy.findings import fracture_findings

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


def test_without_calibration_every_detection_is_listed_at_the_default_threshold():
    record = {key: RECORD[key] for key in ("image", "rib_fracture_probability", "clavicle_fracture_probability")}
    record["detections"] = [{k: v for k, v in d.items() if k != "called"} for d in DETECTIONS]
    assert fracture_findings(record, None, decision_threshold=0.05).splitlines() == [
        "Operating point: probability >= 0.05 (no calibration in the bundle)",
        "Findings: rib_fracture",
        "rib_fracture: probability 0.0931",
        "clavicle_fracture: probability 0.0210",
        "rib_fracture point: x 412.5, y 230.0, score 0.0931",
        "rib_fracture point: x 100.0, y 80.2, score 0.0402",
    ]
