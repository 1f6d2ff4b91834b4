import json
import math

import numpy as np
import pytest
from PIL import Image

from cxrkd_monai.jobs.results import (
    ARMS,
    DEFAULT_DATA,
    REPO_ROOT,
    ResultsSettings,
    _stopping_lines,
    run_results,
    subsample_datalist,
    vkd_datalist_from,
)
from cxrkd_monai.report.ground_truth import read_test_truth


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


def test_letterboxed_truth_gives_boxes_in_original_pixels_and_the_map_pixel_hit_radius(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((64, 128), dtype=np.uint8)).save(tmp_path / "images" / "0.png")  # W 128, H 64
    test = [_item("images/0.png", "D_R", True, [(10, 10, 30, 30, "fracture")])]
    datalist = tmp_path / "datalist_fracture.json"
    datalist.write_text(json.dumps({"class_names": ["fracture"], "training": [], "validation": [], "test": test}))
    truth = read_test_truth(datalist, ["fracture"], image_size=64, output_stride=4)
    first = truth[str((tmp_path / "images" / "0.png").resolve())]
    # 128 px wide letterboxed to 64: one map pixel spans 8 original pixels, half its diagonal 4 * sqrt(2)
    assert first.min_hit_radius == pytest.approx(4 * math.sqrt(2))
    np.testing.assert_array_equal(first.boxes, [[10, 10, 30, 30, 0]])
    np.testing.assert_array_equal(first.label, [1.0])


def test_peer_datalist_holds_the_record_labels_of_every_image_and_nothing_else():
    datalist = {
        "class_names": ["fracture"],
        "training": [_item("r", "D_R", 1, [(1, 2, 3, 4, "fracture")]), _item("p", "D_P", 1), _item("n", "D_N", 0)],
        "validation": [_item("v", "D_N", 0)],
        "test": [_item("t", "D_R", 1, [(1, 2, 3, 4, "fracture")])],
    }  # fmt: skip
    peer = vkd_datalist_from(datalist)
    assert peer["class_names"] == ["fracture"]
    assert peer["training"] == [
        {"image": "r", "patient_id": "r", "label": [1.0], "report": ""},
        {"image": "p", "patient_id": "p", "label": [1.0], "report": ""},
        {"image": "n", "patient_id": "n", "label": [0.0], "report": ""},
    ]
    assert [len(peer[s]) for s in ("validation", "test")] == [1, 1]


def test_the_fracatlas_defaults_are_the_checkouts_docs_and_shared_data():
    assert (REPO_ROOT / "Makefile").is_file() and (REPO_ROOT / "docs" / "results.md").is_file()
    assert REPO_ROOT.parent / "shared" / "data" / "fracatlas_dev" == DEFAULT_DATA


def test_settings_are_checked():
    with pytest.raises(ValueError, match="task must be one of"):
        ResultsSettings(task="segmentation")
    with pytest.raises(ValueError, match="at least one training seed"):
        ResultsSettings(seeds=[])
    settings = ResultsSettings(seeds=(2, 5), single_seed_arms=False)
    arms = {arm.name: settings.arm_seeds(arm) for arm in ARMS["fracture"]}
    assert arms == {"teacher": [2, 5], "aals": [2, 5], "none": [2, 5], "symmetric": [], "mil": [], "peer": [2, 5]}
    assert ResultsSettings(seeds=(2, 5), single_seed_arms=True).arm_seeds(ARMS["fracture"][3]) == [2]


def test_the_report_names_trainings_still_improving_at_their_cap_and_those_stopped_early():
    settings = ResultsSettings(seeds=[0, 1], max_epochs=4, student_epochs=2)
    rising, falling = [(1, 0.1), (2, 0.2)], [(1, 0.3), (2, 0.2)]
    curves = {("teacher", 0): {"val_froc": [*rising, (3, 0.3), (4, 0.4)]}, ("teacher", 1): {"val_froc": falling},
              ("aals", 0): {"val_froc": falling}, ("aals", 1): {"val_froc": rising},
              ("none", 0): {}, ("none", 1): {"val_auroc": rising},  # no key metric: not judged
              ("peer", 0): {"val_macro_auroc": falling}, ("peer", 1): {"val_froc": rising}}  # fmt: skip
    capped, stopped, end = _stopping_lines(settings, curves)
    # the teacher's and the peer's cap is max_epochs, a student's student_epochs; the peer is judged by its AUROC
    assert capped.startswith("**Still improving at the epoch cap:** teacher (stage 1) seed 0, student, AALS seed 1:")
    assert stopped == ("Stopped early (no better validation key metric): teacher (stage 1) seed 1 (epoch 2 of 4), "
                       "peer: image-level classifier seed 0 (epoch 2 of 4).")
    assert end == "" and _stopping_lines(settings, {key: {} for key in curves}) == []


TINY = {"image_size": 64, "max_epochs": 1, "student_epochs": 1, "num_resamples": 50, "single_seed_arms": False}


@pytest.mark.slow
def test_fracture_task_trains_every_arm_scores_as_the_bundles_and_resumes(phantom, tmp_path):
    """Teacher, AALS and no-sharpening students and the peer classifier on the phantom, one seed, pretrained
    EfficientNet-Lite0 from the packaged weights; the scores equal each evaluation's metrics.json. The steps run in
    this process (the subprocess runner is tested in ``tests/bundle/test_commands.py``); the rerun, which finds
    every step done, takes the default subprocess runner."""
    out, report = tmp_path / "results", tmp_path / "results.md"
    figures = run_results(
        "fracture", str(out), datalist=str(phantom / "datalist_fracture.json"), report=str(report), seeds=[0],
        in_process=True, **TINY,
    )  # fmt: skip
    assert set(figures["runs"]) == {"teacher seed 0", "aals seed 0", "none seed 0", "peer seed 0"}
    for arm, key in (("teacher", "val_froc"), ("aals", "val_froc"), ("peer", "val_macro_auroc")):
        metrics = json.loads((out / "test" / f"{arm}_seed0" / "metrics.json").read_text())
        name = "FROC" if key == "val_froc" else "AUROC"
        assert figures["runs"][f"{arm} seed 0"][name]["estimate"] == pytest.approx(metrics[key], abs=1e-9)
    assert "FROC" not in figures["runs"]["peer seed 0"]
    assert set(figures["differences"]) == {"aals - none", "aals - teacher", "none - teacher", "teacher - peer",
                                           "aals - peer"}  # fmt: skip
    assert set(figures["differences"]["teacher - peer"]) == {"AUROC"}
    text = report.read_text()
    assert "peer: image-level classifier" in text and "efficientnet-lite0, packaged, no download" in text
    peer = json.loads((out / "data" / "datalist_vkd.json").read_text())
    assert len(peer["training"]) == len(json.loads((phantom / "datalist_fracture.json").read_text())["training"])

    steps = json.loads((out / "steps.json").read_text())
    assert {f"train {a} seed 0" for a in ("teacher", "aals", "none", "peer")} <= set(steps)
    again = run_results(
        "fracture", str(out), datalist=str(phantom / "datalist_fracture.json"), report=str(report), seeds=[0], **TINY
    )
    assert again["runs"] == figures["runs"]
    reread = json.loads((out / "steps.json").read_text())
    assert {k: v for k, v in reread.items() if k != "scoring and bootstrap"} == {
        k: v for k, v in steps.items() if k != "scoring and bootstrap"
    }  # nothing retrained or re-evaluated
    with pytest.raises(ValueError, match="holds a run with other settings"):
        run_results("fracture", str(out), datalist=str(phantom / "datalist_fracture.json"), seeds=[1], **TINY)
