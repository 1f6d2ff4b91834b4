import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose, EnsureTyped, RandAffined, RandFlipd, RandScaleIntensityd, RandShiftIntensityd

from cxrkd_monai.transforms.device_augmentation import BatchAugmentd
from cxrkd_monai.transforms.target_maps import FractureTargetMapd

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
SEED = 7
BATCH = 12
# The batched RandAffined maps MONAI's centred grid with a (B, 3, 3) @ (3, N) product and normalises it as
# MONAI's Resample does, in float32. Coordinates reach 16 px on a 32 px grid, so a differently ordered sum
# moves a sample point by a few float32 ulps of 16 (~1e-6 px); bilinear weights change by as much, and the
# output (intensities in [0, 1.2] after scaling) by at most ~2.4e-6 per neighbour. 1e-5 bounds it.
AFFINE_ATOL = 1e-5


def bundle_augmentation(bundle: str, config: str) -> list:
    parser = ConfigParser()
    parser.read_config(BUNDLES / bundle / "configs" / config)
    return parser.get_parsed_content("train#augmentation", instantiate=True)


def per_item_reference(transforms: list, batch: dict, keys: list[str]) -> dict:
    """The data-loader path: the same transforms seeded the same way, applied item by item, then stacked."""
    pipeline = Compose(copy.deepcopy(transforms))
    pipeline.set_random_state(seed=SEED)
    items = [pipeline({key: batch[key][index].clone() for key in keys}) for index in range(len(batch[keys[0]]))]
    return {key: torch.stack([torch.as_tensor(item[key]) for item in items]) for key in keys}


def random_batch(**shapes) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {key: torch.rand((BATCH, *shape), generator=generator) for key, shape in shapes.items()}


def test_vkd_augmentation_matches_the_per_item_path_with_the_same_seed():
    transforms = bundle_augmentation("cxr_vkd_classification", "train.json")
    assert {type(t) for t in transforms} >= {RandAffined, RandScaleIntensityd}
    batch = random_batch(image=(1, 32, 32), label=(14,))
    expected = per_item_reference(transforms, batch, ["image", "label"])

    augment = BatchAugmentd(copy.deepcopy(transforms), seed=SEED)
    output = augment({**batch, "report": ["text"] * BATCH})

    assert output["report"] == ["text"] * BATCH
    assert output["image"].dtype == torch.float32 and output["image"].shape == batch["image"].shape
    torch.testing.assert_close(output["image"], expected["image"], atol=AFFINE_ATOL, rtol=0)
    torch.testing.assert_close(output["label"], expected["label"], atol=0, rtol=0)
    # the seed exercises both branches: some items resampled or rescaled, some left exactly as they were
    changed = (output["image"] != batch["image"]).flatten(1).any(dim=1)
    assert 0 < int(changed.sum()) < BATCH


def test_fracture_augmentation_matches_the_per_item_path_exactly():
    transforms = bundle_augmentation("cxr_aals_fracture_detection", "train_teacher.json")
    assert {type(t) for t in transforms} >= {RandFlipd, RandScaleIntensityd, RandShiftIntensityd}
    batch = random_batch(image=(1, 32, 32), target=(2, 8, 8))
    expected = per_item_reference(transforms, batch, ["image", "target"])

    output = BatchAugmentd(copy.deepcopy(transforms), seed=SEED)(batch)
    # flips, factors and offsets are the same float32 operations as per item: bit-identical
    torch.testing.assert_close(output["image"], expected["image"], atol=0, rtol=0)
    torch.testing.assert_close(output["target"], expected["target"], atol=0, rtol=0)
    flipped = (output["target"] != batch["target"]).flatten(1).any(dim=1)
    assert 0 < int(flipped.sum()) < BATCH


def test_flip_moves_the_fracture_map_with_the_image():
    """A bright patch at an annotated point stays on its target-map peak after the batch flip."""
    stride, size = 4, 32
    render = FractureTargetMapd(num_classes=1, output_stride=stride)
    points = [(5.0, 9.0), (22.0, 3.0), (14.0, 27.0)]
    items = []
    for x, y in points:
        image = torch.zeros(1, size, size)
        image[0, int(x), int(y)] = 1.0  # grid axis 0 carries the first point coordinate
        items.append(render({"image": image, "points": np.array([[x, y, 0]])}))
    batch = {key: torch.stack([item[key] for item in items]) for key in ("image", "target")}

    output = BatchAugmentd([RandFlipd(keys=["image", "target"], spatial_axis=0, prob=1.0)], seed=0)(batch)
    for index, (x, y) in enumerate(points):
        bright = np.unravel_index(int(output["image"][index, 0].argmax()), (size, size))
        peak = np.unravel_index(int(output["target"][index, 0].argmax()), (size // stride, size // stride))
        assert bright == (size - 1 - int(x), int(y))
        assert peak == (bright[0] // stride, bright[1] // stride)


def test_each_item_gets_its_own_parameters():
    batch = {"image": torch.ones(64, 1, 4, 4)}
    scale = RandScaleIntensityd(keys="image", factors=0.5, prob=1.0)
    output = BatchAugmentd([scale], seed=3)(batch)["image"]
    factors = output[:, 0, 0, 0]
    assert (output == factors[:, None, None, None]).all()
    assert len(torch.unique(factors)) == 64 and float(factors.min()) >= 0.5 and float(factors.max()) <= 1.5


def test_channel_wise_intensity_and_a_transform_without_a_batched_kernel():
    transforms = [
        RandScaleIntensityd(keys="image", factors=0.2, prob=0.7, channel_wise=True),
        RandShiftIntensityd(keys="image", offsets=0.3, prob=0.7, channel_wise=True),
        RandAffined(keys="image", prob=0.6, rotate_range=0.3, mode="nearest", padding_mode="border"),
        RandAffined(keys="image", prob=0.6, rotate_range=0.3, mode=1, padding_mode="nearest"),  # spline: per item
        EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
    ]
    batch = random_batch(image=(3, 16, 16))
    expected = per_item_reference(transforms, batch, ["image"])
    output = BatchAugmentd(copy.deepcopy(transforms), seed=SEED)(batch)
    torch.testing.assert_close(output["image"], expected["image"], atol=AFFINE_ATOL, rtol=0)


def test_unseeded_augmentation_follows_torch_seed_of_any_size():
    batch = {"image": torch.arange(16.0).reshape(16, 1, 1, 1).expand(16, 1, 2, 2).clone()}
    outputs = []
    for _ in range(2):
        with torch.random.fork_rng():
            torch.manual_seed(2**64 - 5)  # torch seeds span 64 bits, NumPy's generators 32
            augment = BatchAugmentd([RandScaleIntensityd(keys="image", factors=0.5, prob=0.5)])
        outputs.append(augment(batch)["image"])
    torch.testing.assert_close(outputs[0], outputs[1], atol=0, rtol=0)


def test_keys_and_invalid_input_are_named():
    augment = BatchAugmentd(
        [RandFlipd(keys=["image", "target"], prob=0.5), RandScaleIntensityd(keys="image", factors=0.1)]
    )
    assert augment.keys == ("image", "target")
    with pytest.raises(TypeError, match="dictionary transforms, got RandFlip"):
        from monai.transforms import RandFlip

        BatchAugmentd([RandFlip(prob=0.5)])
    with pytest.raises(ValueError, match="disagree on the batch size"):
        augment({"image": torch.zeros(2, 1, 4, 4), "target": torch.zeros(3, 1, 4, 4)})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augmentation_runs_on_the_gpu_batch_like_the_cpu_per_item_path():
    transforms = bundle_augmentation("cxr_vkd_classification", "train.json")
    batch = random_batch(image=(1, 64, 64), label=(14,))
    expected = per_item_reference(transforms, batch, ["image", "label"])
    device_batch = {key: value.cuda() for key, value in batch.items()}
    output = BatchAugmentd(copy.deepcopy(transforms), seed=SEED)(device_batch)
    assert output["image"].device.type == "cuda"
    # CUDA's grid_sample interpolates with fused multiply-adds: the same 1e-5 bound on a [0, 1.2] image
    torch.testing.assert_close(output["image"].cpu(), expected["image"], atol=AFFINE_ATOL * 4, rtol=0)
