"""The AALS fracture bundle end to end on a tiny generated phantom: stage 1, stage 2, evaluation, inference."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pytest
import torch

from tests.conftest import FRACTURE_CONFIGS, PHANTOM_SIZE, error_messages, run_to_completion
from tests.workflows.conftest import (
    FRACTURE_STUDENT,
    FRACTURE_TEACHER,
    FRACTURE_TINY,
    copy_of_bundle_root,
    fracture_workflow,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(phantom, stage1_teacher, tmp_path_factory) -> Path:
    """Stage 1 (the shared teacher) then stage 2 (AALS) into one bundle root."""
    root = copy_of_bundle_root(stage1_teacher, tmp_path_factory)
    student = run_to_completion(
        fracture_workflow(
            [FRACTURE_TEACHER, FRACTURE_STUDENT], "train", bundle_root=str(root), dataset_dir=str(phantom)
        )
    )
    metrics = student.trainer.state.metrics
    assert {"pseudo_positive_rate", "dp_raised_fraction", "dp_positive_area"} <= set(metrics)
    assert 0.0 <= metrics["dp_positive_area"] <= 1.0
    assert (root / "models" / "model.pt").is_file()
    return root


def test_checkpoints_load_into_the_network(trained):
    for name in ("teacher.pt", "model.pt"):
        state = torch.load(trained / "models" / name, map_location="cpu", weights_only=True)
        assert any(key.endswith("weight") for key in state)


@pytest.mark.parametrize("checkpoint", ["teacher.pt", "model.pt"])
def test_evaluate_writes_metrics_froc_curve_and_predictions(trained, phantom, checkpoint, tmp_path):
    output_dir = tmp_path / "eval"
    run_to_completion(
        fracture_workflow(
            [FRACTURE_TEACHER, str(FRACTURE_CONFIGS / "evaluate.json")],
            "train",
            bundle_root=str(trained),
            dataset_dir=str(phantom),
            ckpt_path=str(trained / "models" / checkpoint),
            output_dir=str(output_dir),
        )
    )
    metrics = json.loads((output_dir / "metrics.json").read_text())
    for key in ("val_froc", "val_froc_rib_fracture", "val_auroc", "val_auroc_clavicle_fracture"):
        assert key in metrics
    with open(output_dir / "froc_curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"class", "fps_per_image", "sensitivity"}
    assert {row["class"] for row in rows} <= {"rib_fracture", "clavicle_fracture"}
    test_items = json.loads((phantom / "datalist_fracture.json").read_text())["test"]
    predictions = json.loads((output_dir / "predictions.json").read_text())
    assert len(predictions) == len(test_items)
    assert all(0.0 <= p["rib_fracture_probability"] <= 1.0 for p in predictions)


def test_inference_writes_probabilities_detections_and_maps(trained, phantom, tmp_path):
    output_dir = tmp_path / "predictions"
    workflow = fracture_workflow(
        str(FRACTURE_CONFIGS / "inference.json"),
        "infer",
        bundle_root=str(trained),
        dataset_dir=str(phantom),
        output_dir=str(output_dir),
        peak_threshold=0.0,
        # every peak, not only those called at the model's lesion-level operating point
        keep_uncalled_detections=True,
    )
    run_to_completion(workflow)
    records = json.loads((output_dir / "predictions.json").read_text())
    test_items = json.loads((phantom / "datalist_fracture.json").read_text())["test"]
    width, height = PHANTOM_SIZE
    assert sorted(Path(r["image"]).name for r in records) == sorted(Path(i["image"]).name for i in test_items)
    for record in records:
        assert set(record) >= {"image", "rib_fracture_probability", "clavicle_fracture_probability", "detections"}
        # with a zero threshold every map has at least its maximum as a detection; peaks in the letterbox padding
        # of the non-square image are dropped, so every detection lies inside the image
        assert record["detections"], record
        for detection in record["detections"]:
            assert 0.0 <= detection["x"] <= width and 0.0 <= detection["y"] <= height, detection
        prob_map = nib.load(output_dir / record["probability_map"])  # relative to the predictions files
        assert prob_map.shape == (width, height, 1, 2)  # mapped back to the original image, (W, H) in NIfTI order
    assert (output_dir / "predictions.csv").is_file()


def test_stage2_without_stage1_checkpoint_names_path(phantom, tmp_path):
    # the trainer, which loads the stage-1 checkpoint, is built when the workflow initialises (the early-stopping
    # handler is given it there); MONAI wraps the FileNotFoundError
    with pytest.raises(RuntimeError) as error:
        fracture_workflow(
            [FRACTURE_TEACHER, FRACTURE_STUDENT], "train", bundle_root=str(tmp_path), dataset_dir=str(phantom)
        )
    message = error_messages(error.value)
    assert "Stage-1 checkpoint not found" in message
    assert str(tmp_path / "models" / "teacher.pt") in message


def _broken_datalist(phantom: Path, tmp_path: Path, edit) -> tuple[Path, str]:
    """Copy the phantom's fracture datalist next to its images, with ``edit`` applied to the first D_R item."""
    content = json.loads((phantom / "datalist_fracture.json").read_text())
    item = next(i for i in content["training"] if i["subset"] == "D_R")
    edit(item)
    path = phantom / f"datalist_broken_{tmp_path.name}.json"
    path.write_text(json.dumps(content))
    return path, item["image"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda item: item["boxes"][0].__setitem__(4, "spine_fracture"), "unknown class 'spine_fracture'"),
        (lambda item: item["boxes"][0].__setitem__(2, 640.0), "lies outside the image"),
        (lambda item: (item.pop("boxes"), item.pop("points")), "a 'D_R' item needs at least one entry"),
    ],
    ids=["unknown_class", "box_outside_image", "dr_without_annotations"],
)
def test_bad_training_items_fail_naming_file_and_key(phantom, tmp_path, edit, expected):
    datalist, image = _broken_datalist(phantom, tmp_path, edit)
    workflow = fracture_workflow(
        [FRACTURE_TEACHER], "train", bundle_root=str(tmp_path), dataset_dir=str(phantom), datalist=str(datalist)
    )
    with pytest.raises(RuntimeError) as error:  # MONAI wraps the transform's ValueError
        workflow.run()
    message = error_messages(error.value)
    assert expected in message
    assert Path(image).name in message


def test_multi_gpu_train_with_two_cpu_processes(phantom, tmp_path, tensorboard_writers):
    # fire reads "False" as a boolean and JSON's "false" as a string
    overrides = [
        f"--{key}={value if isinstance(value, bool) else json.dumps(value)}"
        for key, value in {**FRACTURE_TINY, "epochs": 2, "batch_size": 2}.items()
    ]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "monai.bundle", "run",
        "--config_file", json.dumps([FRACTURE_TEACHER, str(FRACTURE_CONFIGS / "multi_gpu_train.json")]),
        "--meta_file", str(FRACTURE_CONFIGS / "metadata.json"),
        "--logging_file", str(FRACTURE_CONFIGS / "logging.conf"),
        "--bundle_root", str(tmp_path),
        "--dataset_dir", str(phantom),
        *overrides,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "models" / "teacher.pt").is_file()
    # only rank 0 writes TensorBoard events
    assert len(tensorboard_writers(tmp_path / "eval")) == 1
