import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.transforms import RandAffined, RandFlipd, RandScaleIntensityd
from torch import nn

from cxrkd_monai.engines.device_augmentation import AugmentingPrepareBatch
from cxrkd_monai.engines.prepare_batch import PrepareFractureBatch
from cxrkd_monai.transforms.device_augmentation import BatchAugmentd


def fracture_batch(size: int = 4) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "image": torch.rand(size, 1, 16, 16, generator=generator),
        "target": torch.rand(size, 1, 4, 4, generator=generator),
        "image_label": torch.ones(size, 1),
        "image_filename": [f"item{index}.png" for index in range(size)],
    }


def test_the_augmentation_runs_on_the_trainer_device():
    """On the meta device no data exist: every augmentation op must have run there, none on the CPU."""
    augmentation = BatchAugmentd(
        [
            RandAffined(keys="image", prob=1.0, rotate_range=0.1, padding_mode="zeros"),
            RandFlipd(keys=["image", "target"], spatial_axis=0, prob=0.5),
            RandScaleIntensityd(keys="image", factors=0.1, prob=1.0),
        ],
        seed=0,
    )
    batch = fracture_batch()
    image, target = AugmentingPrepareBatch(augmentation, PrepareFractureBatch("target"))(batch, torch.device("meta"))
    assert image.device.type == "meta" and target.device.type == "meta"
    assert image.shape == batch["image"].shape and target.shape == batch["target"].shape
    assert batch["image"].device.type == "cpu"  # the loader's batch itself is left as it was


def test_trainer_steps_on_the_flipped_image_and_target_together():
    batch = fracture_batch()
    seen = {}
    network = nn.Sequential(nn.Conv2d(1, 1, 1), nn.AvgPool2d(4))

    def record_input(module, inputs, output):
        seen.setdefault("input", inputs[0].detach())

    network.register_forward_hook(record_input)

    def loss_function(prediction, target):
        seen.setdefault("target", target.detach())
        return nn.functional.mse_loss(prediction, target)

    flip_all = BatchAugmentd([RandFlipd(keys=["image", "target"], spatial_axis=1, prob=1.0)], seed=0)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=[batch],
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        loss_function=loss_function,
        prepare_batch=AugmentingPrepareBatch(flip_all, PrepareFractureBatch("target")),
        decollate=False,
    )
    trainer.run()
    torch.testing.assert_close(seen["input"], batch["image"].flip(3), atol=0, rtol=0)
    torch.testing.assert_close(seen["target"], batch["target"].flip(3), atol=0, rtol=0)
    assert trainer.state.batch["image_filename"] == batch["image_filename"]


def test_default_preparation_returns_the_augmented_image_and_the_label():
    batch = {"image": torch.ones(3, 1, 4, 4), "label": torch.tensor([[1.0], [0.0], [1.0]]), "report": ["a"] * 3}
    double = BatchAugmentd([RandScaleIntensityd(keys="image", factors=(1.0, 1.0), prob=1.0)], seed=0)
    image, label = AugmentingPrepareBatch(double)(batch, torch.device("cpu"))
    torch.testing.assert_close(image, torch.full((3, 1, 4, 4), 2.0))
    torch.testing.assert_close(label, batch["label"])
    with pytest.raises(TypeError, match="expects a dictionary batch, got Tensor"):
        AugmentingPrepareBatch(double)(torch.zeros(3, 1, 4, 4), torch.device("cpu"))
