"""Training controls both bundles share: ``seed`` and ``early_stop_patience``."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import FRACTURE_CONFIGS, VKD_CONFIGS, config_workflow, run_to_completion

pytestmark = pytest.mark.slow


def _overrides(bundle: str, phantom, run_dir) -> tuple[list, dict]:
    """Config files and tiny settings of ``bundle`` ("fracture" or "vkd") on the phantom, with a learning rate of 0."""
    common = {
        "image_size": [64, 64], "batch_size": 8, "num_workers": 0, "pretrained": False, "learning_rate": 0.0,
        "dataset_dir": str(phantom), "bundle_root": str(run_dir), "output_dir": str(run_dir / "eval"),
    }  # fmt: skip
    if bundle == "fracture":
        tiny = {"layers": [1, 1, 1, 1], "block_inplanes": [8, 16, 32, 64], "fpn_channels": 8}
        return [FRACTURE_CONFIGS / "train_teacher.json"], {**common, **tiny}
    class_names = json.loads((phantom / "datalist_vkd.json").read_text())["class_names"]
    tiny = {"class_names": class_names, "latent_dim": 16, "text_cache_dir": str(run_dir / "text_cache")}
    return [VKD_CONFIGS / "train.json"], {**common, **tiny}


@pytest.mark.parametrize("bundle", ["fracture", "vkd"])
def test_early_stopping_ends_training_after_patience_validations_without_a_better_key_metric(bundle, phantom, tmp_path):
    """With a learning rate of 0 the key metric never improves after the first validation: patience 1 stops the
    run after epoch 2 of 5; without patience all 5 run."""
    configs, overrides = _overrides(bundle, phantom, tmp_path)
    epochs = {}
    for patience in (1, None):
        workflow = config_workflow(
            configs, "train", **overrides, epochs=5, early_stop_patience=patience,
            ckpt_dir=str(tmp_path / f"patience_{patience}"),
        )  # fmt: skip
        run_to_completion(workflow)
        epochs[patience] = workflow.trainer.state.epoch
    assert epochs == {1: 2, None: 5}


@pytest.mark.parametrize("bundle", ["fracture", "vkd"])
def test_seed_sets_the_initialisation(bundle, phantom, tmp_path):
    configs, overrides = _overrides(bundle, phantom, tmp_path)
    weights = {}
    for run, seed in enumerate((0, 0, 1)):
        workflow = config_workflow(configs, "train", **overrides, seed=seed, ckpt_dir=str(tmp_path / f"run{run}"))
        weights.setdefault(seed, []).append(next(workflow.parser.get_parsed_content("network").parameters()).detach())
    assert torch.equal(weights[0][0], weights[0][1])
    assert not torch.equal(weights[0][0], weights[1][0])
