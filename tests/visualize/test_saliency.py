"""Grad-CAM saliency of VKD predictions: shape, range, the explained score, and where the evidence lies."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cxrkd_monai.networks import VKDNet
from cxrkd_monai.visualize import VKDSaliency, explain_radiograph, scale_to_unit_peak

IMAGE_SHAPE = (1, 40, 32)  # (C, W, H)


class RegionEncoder(nn.Module):
    """An image encoder that only sees one rectangle: ``(B, 1, W, H)`` -> ``(B, feature_dim)``.

    A stride-2 convolution, then every feature outside ``region`` (half-resolution grid slices) is zeroed
    before the ReLU, so the prediction cannot depend on pixels outside the rectangle (plus the 3x3 halo).
    """

    def __init__(self, region: tuple[slice, slice], feature_dim: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, kernel_size=3, stride=2, padding=1)
        mask = torch.zeros(IMAGE_SHAPE[1] // 2, IMAGE_SHAPE[2] // 2)
        mask[region] = 1.0
        self.register_buffer("mask", mask)
        self.relu = nn.ReLU()
        self.out = nn.Linear(6, feature_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.relu(self.conv(image) * self.mask)
        return self.out(features.mean(dim=(2, 3)))


def region_network(region: tuple[slice, slice], seed: int = 0) -> VKDNet:
    torch.manual_seed(seed)
    return VKDNet(num_classes=3, image_encoder=RegionEncoder(region), image_feature_dim=8, latent_dim=4, hidden_dim=8)


def full_resolution_mask(region: tuple[slice, slice], margin: int = 0) -> np.ndarray:
    mask = np.zeros(IMAGE_SHAPE[1:], dtype=bool)
    rows, cols = region
    mask[
        max(0, 2 * rows.start - margin) : 2 * rows.stop + margin,
        max(0, 2 * cols.start - margin) : 2 * cols.stop + margin,
    ] = True
    return mask


@pytest.mark.parametrize("method", ["gradcam", "gradcampp"])
@pytest.mark.parametrize("region", [(slice(2, 7), slice(3, 8)), (slice(12, 18), slice(9, 15))])
def test_saliency_mass_lies_in_the_only_region_the_prediction_depends_on(method, region):
    network = region_network(region).eval()
    torch.manual_seed(1)
    images = torch.rand(4, *IMAGE_SHAPE)
    outside = ~torch.from_numpy(full_resolution_mask(region, margin=1))
    changed = images.clone()
    changed[:, 0][:, outside] = torch.rand(int(outside.sum()))
    with torch.no_grad():
        torch.testing.assert_close(network.sample_logits(changed, 0), network.sample_logits(images, 0))

    saliency = VKDSaliency(network, target_layer="image_encoder.relu", method=method)
    explained = 0
    for class_index in range(network.num_classes):
        maps = saliency(images, class_index)[:, 0].numpy()
        for saliency_map in maps[maps.reshape(len(maps), -1).max(axis=1) > 0]:
            explained += 1
            # Bilinear upsampling from the stride-2 grid spreads the edge over one full-resolution pixel, a
            # ring that holds at most a quarter of the mass of these regions (a tenth of the image or less).
            assert saliency_map[full_resolution_mask(region, margin=1)].sum() == pytest.approx(saliency_map.sum())
            assert saliency_map[full_resolution_mask(region)].sum() > 0.75 * saliency_map.sum()
    assert explained >= 4, "the seeded network should have positive evidence for several (image, class) pairs"


def test_default_densenet_map_has_the_image_shape_and_unit_range():
    torch.manual_seed(0)
    network = VKDNet(num_classes=4, latent_dim=8, hidden_dim=16).eval()
    images = torch.rand(2, 1, 64, 48)
    maps = VKDSaliency(network)(images)
    assert maps.shape == (2, 1, 64, 48)
    assert torch.isfinite(maps).all()
    assert maps.min() >= 0.0
    peaks = maps.flatten(1).amax(dim=1)
    assert torch.all((peaks == 0) | torch.isclose(peaks, torch.ones_like(peaks)))


def test_explains_the_prior_mean_logit_and_defaults_to_the_top_class():
    network = region_network((slice(0, 20), slice(0, 16))).eval()
    images = torch.rand(5, *IMAGE_SHAPE)
    with torch.no_grad():
        logits = network.sample_logits(images, 0)[0]
        features = network.encode_image(images)
        prior_mean = network.prior(features)[0]
        # the default head reads the latent alone (classifier_input="z")
        expected = network.classifier(prior_mean)
        torch.testing.assert_close(logits, expected)
        torch.testing.assert_close(torch.sigmoid(logits), network.sample_probabilities(images, 0)[0])
    saliency = VKDSaliency(network, target_layer="image_encoder.relu")
    saliency(images)
    assert saliency.last_classes.tolist() == logits.argmax(dim=1).tolist()


def test_the_explained_network_keeps_no_hooks_and_its_weights():
    network = VKDNet(num_classes=2, latent_dim=4, hidden_dim=8).eval()
    before = {name: value.clone() for name, value in network.state_dict().items()}
    VKDSaliency(network, method="gradcampp")(torch.rand(1, 1, 32, 32), 1)
    relu = network.image_encoder.class_layers.relu
    assert not relu._forward_hooks and not relu._backward_hooks and relu.inplace
    for name, value in network.state_dict().items():
        torch.testing.assert_close(value, before[name])


def test_bad_arguments_name_the_problem():
    network = region_network((slice(0, 5), slice(0, 5)))
    with pytest.raises(ValueError, match="target_layer 'image_encoder.nope'"):
        VKDSaliency(network, target_layer="image_encoder.nope")
    with pytest.raises(ValueError, match="method"):
        VKDSaliency(network, target_layer="image_encoder.relu", method="shap")
    saliency = VKDSaliency(network, target_layer="image_encoder.relu")
    with pytest.raises(ValueError, match=r"class_index must lie in \[0, 3\)"):
        saliency(torch.rand(1, *IMAGE_SHAPE), 3)
    with pytest.raises(ValueError, match="2 classes for a batch of 3"):
        saliency(torch.rand(3, *IMAGE_SHAPE), [0, 1])


def test_scale_to_unit_peak_keeps_zero_maps_zero():
    maps = torch.tensor([[[[0.0, 2.0], [1.0, 0.5]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    scaled = scale_to_unit_peak(maps)
    torch.testing.assert_close(scaled[0], maps[0] / 2.0)
    torch.testing.assert_close(scaled[1], maps[1])


def test_explain_radiograph_returns_a_map_on_the_file_pixel_grid(tmp_path):
    rows, cols = 50, 70
    path = tmp_path / "chest.png"
    Image.fromarray((np.random.default_rng(0).random((rows, cols)) * 255).astype(np.uint8)).save(path)
    network = VKDNet(num_classes=3, latent_dim=4, hidden_dim=8).eval()
    image, saliency_map, class_index = explain_radiograph(VKDSaliency(network), path, image_size=(64, 64))
    assert image.shape == (1, cols, rows)
    assert saliency_map.shape == (1, cols, rows)
    assert torch.isfinite(saliency_map).all() and saliency_map.min() >= 0 and saliency_map.max() <= 1
    assert 0 <= class_index < 3
