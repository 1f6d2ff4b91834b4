import json
import math

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from cxrkd_monai.metrics.froc import FROCMetric
from cxrkd_monai.results import (
    ResultsSettings,
    paired_differences,
    read_test_truth,
    score_predictions,
    subsample_datalist,
)

DEFAULTS = {"fp_per_image": [0.125, 0.25, 0.5, 1, 2, 4, 8], "point_radius": 10.0}


def _item(name, subset, positive, boxes=()):
    return {"image": name, "subset": subset, "image_label": [float(positive)], "patient_id": name,
            "boxes": [list(b) for b in boxes], "points": [[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[4]] for b in boxes]}


def test_subsample_keeps_every_split_and_subset_in_proportion():
    datalist = {
        "class_names": ["fracture"],
        "training": [_item(f"r{i}", "D_R", 1) for i in range(10)] + [_item(f"p{i}", "D_P", 1) for i in range(30)]
        + [_item(f"n{i}", "D_N", 0) for i in range(60)],
        "validation": [_item(f"v{i}", "D_N", 0) for i in range(8)] + [_item("vr", "D_R", 1)],
        "test": [_item(f"t{i}", "D_N", 0) for i in range(10)],
    }  # fmt: skip
    small = subsample_datalist(datalist, max_images=24, seed=1)
    assert small["class_names"] == ["fracture"]
    assert [sum(it["subset"] == s for it in small["training"]) for s in ("D_R", "D_P", "D_N")] == [2, 6, 12]
    assert {it["subset"] for it in small["validation"]} == {"D_R", "D_N"} and len(small["test"]) == 2
    assert small == subsample_datalist(datalist, max_images=24, seed=1)


def test_scores_recompute_auroc_and_froc_from_bundle_predictions(tmp_path):
    (tmp_path / "images").mkdir()
    boxes = {0: [(10, 10, 30, 30, "fracture")], 1: [(40, 5, 60, 20, "fracture")], 2: [], 3: [], 4: []}
    test = []
    for i, image_boxes in boxes.items():
        Image.fromarray(np.zeros((64, 128), dtype=np.uint8)).save(tmp_path / "images" / f"{i}.png")  # W 128, H 64
        test.append(_item(f"images/{i}.png", "D_R" if image_boxes else "D_N", bool(image_boxes), image_boxes))
    datalist = tmp_path / "datalist_fracture.json"
    datalist.write_text(json.dumps({"class_names": ["fracture"], "training": [], "validation": [], "test": test}))
    # image 0: a hit at 0.9; image 1: a miss at 0.3 beside a false positive at 0.8; negatives score 0.2-0.6
    detections = {0: [(20, 20, 0.9)], 1: [(100, 50, 0.8)], 2: [(5, 5, 0.6)], 3: [], 4: [(70, 40, 0.2)]}
    probability = {0: 0.9, 1: 0.8, 2: 0.6, 3: 0.01, 4: 0.2}
    predictions = [
        {"image": str(tmp_path / "images" / f"{i}.png"), "fracture_probability": probability[i],
         "detections": [{"class": "fracture", "x": x, "y": y, "score": s} for x, y, s in detections[i]]}
        for i in boxes
    ]  # fmt: skip
    (tmp_path / "predictions.json").write_text(json.dumps(predictions))

    truth = read_test_truth(datalist, ["fracture"], image_size=64, output_stride=4)
    first = truth[str((tmp_path / "images" / "0.png").resolve())]
    # 128 px wide letterboxed to 64: one map pixel spans 8 original pixels, half its diagonal 4 * sqrt(2)
    assert first.min_hit_radius == pytest.approx(4 * math.sqrt(2))
    np.testing.assert_array_equal(first.boxes, [[10, 10, 30, 30, 0]])
    result = score_predictions(tmp_path / "predictions.json", truth, ["fracture"], DEFAULTS,
                               ResultsSettings(num_resamples=200, seed=3))

    labels, scores = [1, 1, 0, 0, 0], [0.9, 0.8, 0.6, 0.01, 0.2]
    assert result["auroc"]["fracture"].estimate == pytest.approx(roc_auc_score(labels, scores))
    froc = FROCMetric(num_classes=1, class_names=["fracture"], fp_per_image=DEFAULTS["fp_per_image"])
    for i in boxes:
        rows = np.array(detections[i], dtype=float).reshape(-1, 3)
        froc.update([rows], np.array([[*b[:4], 0] for b in boxes[i]], dtype=float).reshape(-1, 5))
    assert result["froc"].estimate == pytest.approx(froc.compute()["fracture"]["score"])
    assert 0 < result["froc"].estimate < 1  # one of two lesions found, after one false positive per 5 images
    assert result["froc"].low <= result["froc"].estimate <= result["froc"].high
    assert result["num_images"] == 5 and result["num_positive"] == [2] and result["num_lesions"] == 2

    predictions.pop()
    (tmp_path / "predictions.json").write_text(json.dumps(predictions))
    with pytest.raises(RuntimeError, match=r"predictions.json lacks 1 test image"):
        score_predictions(tmp_path / "predictions.json", truth, ["fracture"], DEFAULTS, ResultsSettings())


def test_paired_differences_resample_both_models_on_the_same_images():
    rng = np.random.default_rng(7)
    labels = np.array([1, 0] * 20)
    model_scores = {stem: rng.random(40) + 0.3 * labels * k for k, stem in enumerate(
        ["teacher", "student_aals", "student_none", "student_symmetric", "student_mil"])}  # fmt: skip

    def auroc(stem):
        return lambda index: roc_auc_score(labels[index], model_scores[stem][index]) if len(set(labels[index])) == 2 \
            else math.nan

    scores = {stem: {"statistics": {"auroc fracture": auroc(stem)}, "num_images": 40} for stem in model_scores}
    settings = ResultsSettings(num_resamples=300, seed=5)
    differences = paired_differences(scores, settings)

    interval = differences[("student_aals", "teacher")]["auroc fracture"]
    draws = np.random.default_rng(5)
    direct = []
    for _ in range(300):
        index = draws.integers(0, 40, 40)
        direct.append(auroc("student_aals")(index) - auroc("teacher")(index))
    direct = np.array(direct)
    low, high = np.percentile(direct[np.isfinite(direct)], [2.5, 97.5])
    assert interval.estimate == pytest.approx(auroc("student_aals")(np.arange(40)) - auroc("teacher")(np.arange(40)))
    assert (interval.low, interval.high) == pytest.approx((low, high))
    # a model compared with an identical copy differs by exactly 0 on every resample
    scores["teacher"] = scores["student_aals"]
    same = paired_differences(scores, settings)[("student_aals", "teacher")]["auroc fracture"]
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
