"""VKD inference with ``--explain True`` writes one Grad-CAM saliency PNG per image and its path per prediction."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow
from PIL import Image

from cxrkd_monai.networks import VKDNet
from cxrkd_monai.phantom import generate_phantom_dataset

pytestmark = pytest.mark.slow

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "cxr_vkd_classification" / "configs"


def infer(phantom: Path, output_dir: Path, checkpoint: Path, class_names: list[str], **overrides) -> list[dict]:
    workflow = ConfigWorkflow(
        config_file=str(CONFIGS / "inference.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type="infer",
        dataset_dir=str(phantom),
        ckpt_path=str(checkpoint),
        output_dir=str(output_dir),
        class_names=class_names,
        image_size=[64, 64],
        latent_dim=16,
        inference_mc_samples=2,
        num_workers=0,
        **overrides,
    )
    workflow.initialize()
    assert not workflow.check_properties()
    workflow.run()
    workflow.finalize()
    with open(output_dir / "predictions.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_explain_writes_one_saliency_map_per_image_on_its_pixel_grid(tmp_path):
    phantom = tmp_path / "phantom"
    generate_phantom_dataset(output_dir=str(phantom), num_patients=8, seed=5, image_size=(72, 64))
    datalist = json.loads((phantom / "datalist_vkd.json").read_text())
    class_names = datalist["class_names"]
    torch.manual_seed(0)
    checkpoint = tmp_path / "model.pt"
    torch.save(VKDNet(num_classes=len(class_names), latent_dim=16).state_dict(), checkpoint)

    records = infer(phantom, tmp_path / "explained", checkpoint, class_names, explain=True)
    assert len(records) == len(datalist["test"])
    saliency_files = sorted((tmp_path / "explained" / "saliency").glob("*.png"))
    assert len(saliency_files) == len(records)
    for record in records:
        probabilities = [float(record[f"prob_{name}"]) for name in class_names]
        assert record["saliency_class"] == class_names[int(np.argmax(probabilities))]
        saliency = Image.open(tmp_path / "explained" / record["saliency"])
        source = Image.open(record["image"])
        assert saliency.size == source.size and saliency.mode == "L"

    plain = infer(phantom, tmp_path / "plain", checkpoint, class_names)
    assert "saliency" not in plain[0]
    assert not (tmp_path / "plain" / "saliency").exists()
