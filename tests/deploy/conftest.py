"""Shared by the hand-over tests and the Deploy app tests (which run in ``.venv-deploy``): tiny bundles with seeded
initial weights (the tiny demo run is in ``tests/conftest.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from monai.bundle import ConfigParser

VKD_TINY = {
    "image_size": [64, 64],
    "latent_dim": 16,
    "inference_mc_samples": 4,
    "network_def#image_encoder": {
        "_target_": "DenseNet",
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 32,
        "init_features": 8,
        "growth_rate": 8,
        "block_config": [2, 2, 2, 2],
    },
    "network_def#image_feature_dim": 32,
}

FRACTURE_TINY = {
    "image_size": [64, 64],
    "layers": [1, 1, 1, 1],
    "block_inplanes": [8, 16, 32, 64],
    "fpn_channels": 8,
    # an initialised detector scores about 0.01 everywhere; a low threshold still yields points to compare
    "peak_threshold": 0.005,
    "max_peaks": 5,
}


def make_tiny_bundle(source: Path, destination: Path, overrides: dict) -> Path:
    """A copy of a bundle's configs with ``overrides`` written into inference.json and seeded initial weights."""
    shutil.copytree(source / "configs", destination / "configs")
    parser = ConfigParser()
    parser.read_config(str(destination / "configs" / "inference.json"))
    parser.update(overrides)
    ConfigParser.export_config_file(parser.get(), str(destination / "configs" / "inference.json"), indent=1)
    torch.manual_seed(0)
    (destination / "models").mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), destination / "models" / "model.pt")
    return destination
