"""A 2-process ``torchrun`` run of the VKD bundle's ``multi_gpu_train.json``: each validation item is validated once.

Under DDP each rank validates its own share of the validation set (a ``DistributedSampler`` that does not pad
the shares to equal length), and the validation metrics gather every rank's items. The test runs the bundle
under ``torchrun`` with 2 CPU (gloo) processes; each process records the items its evaluator saw and the metric
it computed. Every item of an odd-sized validation set (equal shares would repeat one) must be seen by exactly
one rank, and the AUROC every rank reports must be the AUROC of all items, each counted once.

This module is also the ``torchrun`` worker: ``python -m torch.distributed.run ... <this file> <args.json>``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from cxrkd_monai.metrics import MultiLabelAUROCMetric
from cxrkd_monai.phantom import generate_phantom_dataset

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "cxr_vkd_classification"
CONFIGS = BUNDLE / "configs"


def _record_validated_items(evaluator, records: dict) -> None:
    """Adds each validated item's image path and its probabilities, label and label mask (each ``(C,)``)."""
    @evaluator.on(Events.ITERATION_COMPLETED)
    def _record(engine) -> None:
        for item, output in zip(engine.state.batch, engine.state.output):
            records["images"].append(str(item["image"].meta["filename_or_obj"]))
            records["pred_prob"].append(output["pred_prob"].tolist())
            records["label"].append(item["label"].tolist())
            records["label_mask"].append(item["label_mask"].tolist())


def worker(arguments_file: str) -> None:
    """One ``torchrun`` process: the bundle's multi-GPU training run; writes ``validated_rank<r>.json``."""
    arguments = json.loads(Path(arguments_file).read_text())
    workflow = ConfigWorkflow(
        config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "multi_gpu_train.json")],
        workflow_type="train",
        logging_file=str(CONFIGS / "logging.conf"),
        **arguments["overrides"],
    )
    workflow.initialize()
    rank = torch.distributed.get_rank()
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    records = {"images": [], "pred_prob": [], "label": [], "label_mask": []}
    _record_validated_items(evaluator, records)
    workflow.run()
    records["val_macro_auroc"] = float(evaluator.state.metrics["val_macro_auroc"])
    records["world_size"] = torch.distributed.get_world_size()
    workflow.finalize()
    (Path(arguments["output_dir"]) / f"validated_rank{rank}.json").write_text(json.dumps(records))


@pytest.fixture
def odd_validation_set(tmp_path) -> Path:
    """A phantom dataset whose datalist has an odd number (5) of validation items, with absolute image paths."""
    phantom = tmp_path / "phantom"
    generate_phantom_dataset(output_dir=str(phantom), num_patients=16, seed=3, image_size=(72, 64))
    datalist = json.loads((phantom / "datalist_vkd.json").read_text())
    for split in ("training", "validation", "test"):
        for item in datalist[split]:
            item["image"] = str(phantom / item["image"])
    assert len(datalist["validation"]) >= 5
    datalist["validation"] = datalist["validation"][:5]
    (phantom / "datalist_vkd.json").write_text(json.dumps(datalist))
    return phantom


@pytest.mark.slow
def test_two_processes_validate_each_item_once(odd_validation_set, tmp_path):
    datalist = json.loads((odd_validation_set / "datalist_vkd.json").read_text())
    run_dir = tmp_path / "run"
    arguments = {
        "output_dir": str(tmp_path),
        "overrides": {
            "bundle_root": str(BUNDLE),
            "dataset_dir": str(odd_validation_set),
            "ckpt_dir": str(run_dir / "models"),
            "output_dir": str(run_dir / "eval"),
            "text_cache_dir": str(run_dir / "text_cache"),
            "class_names": datalist["class_names"],
            "image_size": [64, 64],
            "latent_dim": 16,
            "epochs": 1,
            "batch_size": 2,
            "num_workers": 0,
            "inference_mc_samples": 4,
            "pretrained": False,
        },
    }
    arguments_file = tmp_path / "arguments.json"
    arguments_file.write_text(json.dumps(arguments))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    command += [str(Path(__file__).resolve()), str(arguments_file)]
    result = subprocess.run(
        command, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]

    ranks = [json.loads((tmp_path / f"validated_rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # each rank validated its own share: 3 and 2 of the 5 items, none of them twice
    assert sorted(len(r["images"]) for r in ranks) == [2, 3]
    validated = Counter(image for r in ranks for image in r["images"])
    assert validated == Counter(item["image"] for item in datalist["validation"])

    # the metric every rank reports is the AUROC of the 5 items, gathered from both ranks once each
    metric = MultiLabelAUROCMetric(datalist["class_names"])
    for r in ranks:
        metric(torch.tensor(r["pred_prob"]), torch.tensor(r["label"]), mask=torch.tensor(r["label_mask"]))
    expected = metric.aggregate()
    assert expected == expected, "no class has both labels among the 5 validation items"
    for r in ranks:
        assert r["val_macro_auroc"] == pytest.approx(expected, abs=1e-9)


if __name__ == "__main__":
    worker(sys.argv[1])
