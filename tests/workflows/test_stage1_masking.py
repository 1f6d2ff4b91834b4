"""Stage 1 of the AALS bundle on a generic-CSV datalist: a record-positive type without a region is out of the loss."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxrkd_monai.prepare import GenericFractureCsvAdapter
from tests.conftest import config_workflow, run_to_completion
from tests.workflows.conftest import FRACTURE_TEACHER, FRACTURE_TINY

pytestmark = pytest.mark.slow

POS_WEIGHT = 10.0
HEADER = ["image", "patient_id", "split", "rib_fracture", "clavicle_fracture", "boxes"]
RIB_BOX = json.dumps([[16, 20, 40, 36, "rib_fracture"]])
ROWS = [
    # D_R: the record says rib and clavicle; only the rib fracture has a box, so the clavicle map is unknown
    ["img/both.png", "A", "training", "1", "1", RIB_BOX],
    ["img/negative.png", "B", "training", "0", "0", ""],
    ["img/val_positive.png", "C", "validation", "1", "0", RIB_BOX],
    ["img/val_negative.png", "D", "validation", "0", "0", ""],
    ["img/test.png", "E", "test", "0", "0", ""],
]


@pytest.fixture(scope="module")
def datalist(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hospital")
    rng = np.random.default_rng(0)
    for row in ROWS:
        (root / row[0]).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(root / row[0])
    with open(root / "fractures.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([HEADER, *ROWS])
    path = root / "datalist.json"
    GenericFractureCsvAdapter(root, csv_file="fractures.csv", official_split=True).prepare(path)
    return path


def _hand_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Support-weighted BCE per pixel, ``w * -(y log p + (1 - y) log(1 - p))``, ``w = 10`` where ``y > 0``."""
    p = torch.sigmoid(logits.double())
    target = target.double()
    weight = torch.where(target > 0, POS_WEIGHT, 1.0)
    return -weight * (target * p.log() + (1.0 - target) * (1.0 - p).log())


def test_stage1_leaves_the_unannotated_positive_type_out_and_trains(datalist, tmp_path):
    training = json.loads(datalist.read_text())["training"]
    both = next(item for item in training if item["patient_id"] == "A")
    assert both["image_label"] == [1.0, 1.0] and [b[-1] for b in both["boxes"]] == ["rib_fracture"]

    workflow = config_workflow(
        [FRACTURE_TEACHER],
        "train",
        **FRACTURE_TINY,
        bundle_root=str(tmp_path),
        datalist=str(datalist),
        pos_weight=POS_WEIGHT,
    )
    parser = workflow.parser
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    _, (target, known) = parser.get_parsed_content("train#prepare_batch")(batch, torch.device("cpu"))
    index = {Path(name).name: i for i, name in enumerate(batch["image_filename"])}
    a, n = index["both.png"], index["negative.png"]
    assert known[a].tolist() == [True, False] and known[n].tolist() == [True, True]
    assert target[a, 0].max() == 1.0 and target[a, 1].max() == 0.0  # the rib blob; an all-zero clavicle rendering

    network = parser.get_parsed_content("network")
    logits = network(batch["image"]).detach().requires_grad_()
    loss = parser.get_parsed_content("loss")(logits, (target, known))
    hand = _hand_loss(logits.detach(), target)
    counted = [hand[a, 0], hand[n, 0], hand[n, 1]]  # every map but the unknown clavicle map of item A
    expected = sum(m.sum() for m in counted) / sum(m.numel() for m in counted)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with_clavicle = (hand.sum() / hand.numel()).item()
    assert not math.isclose(loss.item(), with_clavicle, rel_tol=1e-3), "the all-zero clavicle map would change it"
    loss.backward()
    assert torch.count_nonzero(logits.grad[a, 1]) == 0 and torch.count_nonzero(logits.grad[a, 0]) > 0

    run_to_completion(workflow)
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 1 and math.isfinite(trainer.state.output[0]["loss"])
    assert (tmp_path / "models" / "teacher.pt").is_file()
