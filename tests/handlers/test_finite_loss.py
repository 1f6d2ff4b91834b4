"""FiniteLossGuard: training stops at a non-finite loss, naming epoch, iteration and the batch's image files."""

from __future__ import annotations

import math

import pytest
import torch
from monai.data import MetaTensor
from monai.engines import SupervisedTrainer

from cxrkd_monai.engines.prepare_batch import PrepareFractureBatch
from cxrkd_monai.handlers.finite_loss import FiniteLossGuard, batch_file_names
from cxrkd_monai.networks.fracture_fpn import FractureFPN
from tests.conftest import FRACTURE_CONFIGS, config_workflow, error_chain

FAST_NETWORK = {"layers": [1, 1, 1, 1], "block_inplanes": [8, 16, 32, 64], "fpn_channels": 8}


def _batch(names: list[str], nan: bool = False) -> dict:
    image = torch.rand(len(names), 1, 8, 8)
    if nan:
        image[-1, 0, 3, 3] = float("nan")
    return {"image": image, "target": torch.zeros(len(names), 2, 8, 8), "image_filename": names}


def _stage1_trainer(network: torch.nn.Module, batches: list[dict], max_epochs: int = 1) -> SupervisedTrainer:
    """Stage 1 as the bundle builds it: SupervisedTrainer, pos-weighted BCE, the guard among the handlers."""
    return SupervisedTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=batches,
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        loss_function=torch.nn.BCEWithLogitsLoss(pos_weight=torch.full((2, 1, 1), 10.0)),
        prepare_batch=PrepareFractureBatch(),
        train_handlers=[FiniteLossGuard()],
    )


def test_stage1_nan_loss_names_epoch_iteration_and_images():
    torch.manual_seed(0)
    network = torch.nn.Conv2d(1, 2, kernel_size=3, padding=1)
    batches = [_batch(["a.png", "b.png"]), _batch(["c.png", "d.png"]), _batch(["e.png", "f.png"], nan=True)]
    trainer = _stage1_trainer(network, batches, max_epochs=2)
    with pytest.raises(FloatingPointError) as error:
        trainer.run()
    message = str(error.value)
    assert "not finite (nan)" in message
    assert "epoch 1, iteration 3 of 3 (iteration 3 overall)" in message
    assert "e.png, f.png" in message and "a.png" not in message
    assert trainer.state.iteration == 3 and torch.isfinite(network.weight).all()


def test_file_names_fall_back_to_image_meta():
    image = MetaTensor(torch.zeros(2, 1, 4, 4), meta={"filename_or_obj": ["x.dcm", "y.dcm"]})
    assert batch_file_names({"image": image}) == ["x.dcm", "y.dcm"]
    assert batch_file_names({"image": torch.zeros(1), "image_meta_dict": {"filename_or_obj": ["z.png"]}}) == ["z.png"]
    assert batch_file_names({"image": torch.zeros(1)}) == []


def test_infinite_loss_without_file_names_says_so():
    network = torch.nn.Conv2d(1, 2, kernel_size=1)
    batch = _batch(["a.png"])
    del batch["image_filename"]
    batch["image"][0, 0, 0, 0] = math.inf
    with pytest.raises(FloatingPointError, match="file names unavailable"):
        _stage1_trainer(network, [batch]).run()


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["teacher", "student"])
def test_bundle_training_stops_at_nan_loss_naming_the_images(phantom, tmp_path, stage):
    """A hard-target loss with a NaN positive weight on every pixel makes the first loss NaN; the bundle's own
    trainer must stop right there."""
    root = tmp_path / "bundle"
    configs = [FRACTURE_CONFIGS / "train_teacher.json"]
    if stage == "student":
        configs.append(FRACTURE_CONFIGS / "train_student.json")
        (root / "models").mkdir(parents=True)
        teacher = FractureFPN(in_channels=1, num_classes=2, spatial_dims=2, output_stride=4, **FAST_NETWORK)
        torch.save(teacher.state_dict(), root / "models" / "teacher.pt")
    workflow = config_workflow(
        configs,
        "train",
        bundle_root=str(root),
        dataset_dir=str(phantom),
        image_size=[64, 64],
        epochs=1,
        batch_size=4,
        num_workers=0,
        hard_target_loss={
            "_target_": "torch.nn.BCEWithLogitsLoss",
            "pos_weight": "$torch.full((2, 1, 1), float('nan'))",
            "reduction": "none",
        },
        pretrained=False,
        **FAST_NETWORK,
    )
    with pytest.raises(Exception) as error:
        workflow.run()
    guard_errors = [e for e in error_chain(error.value) if isinstance(e, FloatingPointError)]
    assert guard_errors, f"training must stop with the guard's FloatingPointError, got {error.value!r}"
    messages = str(guard_errors[0])
    assert "epoch 1, iteration 1 of" in messages
    assert str(phantom / "images") in messages and ".png" in messages
    assert workflow.trainer.state.iteration == 1
