"""The training configs of both bundles keep their data-loader workers alive between epochs.

``benchmarks/training_loop.py`` measured the full loop with workers restarted every epoch at 0.78 of the raw
training step and with persistent workers at 0.93; PyTorch refuses ``persistent_workers`` without workers, so
the configs tie it to ``num_workers``.
"""

from pathlib import Path

import pytest
from monai.bundle import ConfigParser
from monai.data import DataLoader

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
TRAINING_CONFIGS = [
    BUNDLES / "cxr_vkd_classification" / "configs" / "train.json",
    BUNDLES / "cxr_aals_fracture_detection" / "configs" / "train_teacher.json",
]


@pytest.mark.parametrize("config", TRAINING_CONFIGS, ids=lambda path: path.parent.parent.name)
@pytest.mark.parametrize("loader", ["train#dataloader", "validate#dataloader"])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_workers_persist_whenever_there_are_workers(config, loader, num_workers):
    parser = ConfigParser()
    parser.read_config(str(config))
    parser["num_workers"] = num_workers
    # the training loader's class is the config value train_loader, DataLoader by default
    assert parser[f"{loader}#_target_"] in ("DataLoader", "@train_loader") and parser["train_loader"] == "DataLoader"
    persistent = parser.get_parsed_content(f"{loader}#persistent_workers")
    assert persistent is (num_workers > 0)
    # the pair is one DataLoader accepts (persistent workers without workers raise ValueError)
    DataLoader(list(range(4)), num_workers=num_workers, persistent_workers=persistent)
