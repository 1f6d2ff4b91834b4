"""Both bundles train with ``backbone efficientnet-lite0, pretrained True`` on a machine without network access.

Every socket connection is refused while the workflows are built and run, and the Hugging Face hub is set
offline, so a download anywhere (ImageNet weights, the text encoder) fails the test. The networks are checked
to start from the packaged ImageNet file: their one-channel stem is the sum of its RGB filters.
"""

from __future__ import annotations

import math
import socket

import pytest
import torch

from cxrkd_monai.networks.pretrained import efficientnet_lite0_weights_file
from cxrkd_monai.phantom import generate_phantom_dataset
from tests.conftest import FRACTURE_CONFIGS, VKD_CONFIGS, config_workflow, run_to_completion
from tests.workflows.conftest import FRACTURE_TINY, vkd_tiny_overrides

pytestmark = pytest.mark.slow

PRETRAINED_LITE0 = {"backbone": "efficientnet-lite0", "pretrained": True}


def _no_network(*args, **kwargs):
    raise AssertionError("the bundle tried to open a network connection")


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)


def _summed_imagenet_stem() -> torch.Tensor:
    weights = torch.load(efficientnet_lite0_weights_file(), map_location="cpu", weights_only=True)
    return weights["_conv_stem.weight"].sum(dim=1, keepdim=True)


def _stem(network: torch.nn.Module) -> torch.Tensor:
    return next(value for key, value in network.state_dict().items() if key.endswith("_conv_stem.weight")).cpu()


def test_vkd_trains_one_epoch_on_pretrained_efficientnet_lite0_offline(phantom, tmp_path, offline):
    overrides = vkd_tiny_overrides(phantom, tmp_path, epochs=1, **PRETRAINED_LITE0)
    workflow = config_workflow(VKD_CONFIGS / "train.json", "train", **overrides)
    network = workflow.parser.get_parsed_content("network")
    torch.testing.assert_close(_stem(network), _summed_imagenet_stem())
    assert network.image_feature_dim == 1280
    run_to_completion(workflow)
    assert workflow.trainer.state.epoch == 1 and math.isfinite(workflow.trainer.state.output[0]["loss"])
    assert (tmp_path / "models" / "model.pt").is_file()


def test_fracture_teacher_and_student_train_on_pretrained_efficientnet_lite0_offline(tmp_path, offline):
    data = tmp_path / "data"
    generate_phantom_dataset(data, num_patients=8, image_size=(64, 64), seed=0)
    overrides = {
        **FRACTURE_TINY,
        **PRETRAINED_LITE0,
        "layers": None,
        "block_inplanes": None,
        "bundle_root": str(tmp_path / "bundle"),
        "dataset_dir": str(data),
    }
    teacher = config_workflow(FRACTURE_CONFIGS / "train_teacher.json", "train", **overrides)
    torch.testing.assert_close(_stem(teacher.parser.get_parsed_content("network")), _summed_imagenet_stem())
    run_to_completion(teacher)
    assert teacher.trainer.state.epoch == 1 and "val_froc" in teacher.evaluator.state.metrics
    student = config_workflow(
        [FRACTURE_CONFIGS / "train_teacher.json", FRACTURE_CONFIGS / "train_student.json"], "train", **overrides
    )
    run_to_completion(student)
    assert student.trainer.state.epoch == 1
    assert (tmp_path / "bundle" / "models" / "model.pt").is_file()
