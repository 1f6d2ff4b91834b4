"""PrepareFractureBatch: the network input and the one label tensor a fracture trainer or evaluator needs."""

from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedEvaluator
from monai.inferers import SimpleInferer

from cxrkd_monai.engines import PrepareFractureBatch


def fracture_batch() -> dict:
    """Two items as the fracture bundle's loader collates them: image, target maps, record labels, boxes."""
    return {
        "image": torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4),
        "target": torch.zeros(2, 2, 4, 4),
        "image_label": [[1, 0], [0, 1]],
        "boxes": [[[0.0, 0.0, 2.0, 2.0, "rib_fracture"]], []],
    }


def test_the_trainer_gets_image_and_target_maps():
    batch = fracture_batch()
    image, label = PrepareFractureBatch()(batch, torch.device("cpu"))
    assert image is batch["image"] or torch.equal(image, batch["image"])
    assert torch.equal(label, batch["target"])


def test_the_evaluator_gets_the_record_labels_as_a_tensor():
    image, label = PrepareFractureBatch(label_key="image_label")(fracture_batch(), "cpu")
    assert torch.equal(label, torch.tensor([[1, 0], [0, 1]]))
    assert image.shape == (2, 1, 4, 4)


def test_dtype_and_device_arguments_reach_both_tensors():
    image, label = PrepareFractureBatch()(fracture_batch(), "cpu", False, dtype=torch.float64)
    assert image.dtype == label.dtype == torch.float64
    assert image[1, 0, 3, 3].item() == 31.0  # the values travel unchanged: item 1 starts at 16


def test_a_missing_key_is_named_with_the_batch_keys():
    batch = fracture_batch()
    del batch["target"]
    with pytest.raises(KeyError, match=r"no 'target' \(keys: \['boxes', 'image', 'image_label'\]\)"):
        PrepareFractureBatch()(batch, "cpu")


def test_an_evaluator_with_it_puts_map_maxima_next_to_record_labels():
    """What the fracture evaluator runs: the network's maps for the image, and the (B, K) record labels."""
    batch = fracture_batch()
    del batch["boxes"]  # ragged annotations stay in the batch; this network does not need them
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=[batch],
        network=torch.nn.Conv2d(1, 2, kernel_size=1, bias=False),
        inferer=SimpleInferer(),
        prepare_batch=PrepareFractureBatch(label_key="image_label"),
        decollate=False,
    )
    with torch.no_grad():
        evaluator.network.weight.copy_(torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1))
    evaluator.run()
    output = evaluator.state.output
    # channel 0 is the image (maxima 15 and 31), channel 1 its negative (maxima -0 and -16)
    torch.testing.assert_close(output["pred"].amax(dim=(2, 3)), torch.tensor([[15.0, 0.0], [31.0, -16.0]]))
    assert torch.equal(output["label"], torch.tensor([[1, 0], [0, 1]]))
