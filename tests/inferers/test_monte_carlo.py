"""MonteCarloPriorInferer: the mean and spread of L prior draws, against hand-computed figures and VKDNet itself."""

from __future__ import annotations

import math

import pytest
import torch
from monai.networks.nets import DenseNet
from torch import nn

from cxrkd_monai.inferers import MonteCarloPriorInferer
from cxrkd_monai.networks import VKDNet


class FixedSamples(nn.Module):
    """Stands in for VKDNet: ``sample_probabilities`` returns given draws ``(L, B, C)``, whatever the image."""

    def __init__(self, samples: torch.Tensor) -> None:
        super().__init__()
        self.samples = samples
        self.requested = []

    def sample_probabilities(self, image: torch.Tensor, num_samples: int) -> torch.Tensor:
        self.requested.append(num_samples)
        return self.samples


class Wrapped(nn.Module):
    """Like ``DistributedDataParallel``: the network sits under ``module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def tiny_vkd() -> VKDNet:
    torch.manual_seed(0)
    encoder = DenseNet(spatial_dims=2, in_channels=1, out_channels=8, init_features=4, growth_rate=4, block_config=(2,))
    return VKDNet(num_classes=3, image_encoder=encoder, image_feature_dim=8, text_feature_dim=4, latent_dim=4).eval()


def test_mean_and_population_spread_of_the_draws():
    # three draws, one image, two classes: the first class varies, the second does not
    samples = torch.tensor([[[0.2, 0.9]], [[0.4, 0.9]], [[0.6, 0.9]]])
    network = FixedSamples(samples)
    output = MonteCarloPriorInferer(num_samples=3)(torch.zeros(1, 1, 8, 8), network)
    assert output.shape == (1, 2, 2)  # (B, [mean, std], C)
    # mean 0.4 and 0.9; spread sqrt(((-0.2)^2 + 0^2 + 0.2^2) / 3) = sqrt(0.08 / 3) over L, not L - 1
    expected = torch.tensor([[[0.4, 0.9], [math.sqrt(0.08 / 3), 0.0]]])
    torch.testing.assert_close(output, expected, rtol=0, atol=1e-6)
    assert network.requested == [3]


@pytest.mark.parametrize("num_samples", [0, 1])
def test_a_single_draw_has_zero_spread(num_samples):
    network = FixedSamples(torch.tensor([[[0.25, 0.75], [0.5, 0.125]]]))
    output = MonteCarloPriorInferer(num_samples)(torch.zeros(2, 1, 8, 8), network)
    torch.testing.assert_close(output[:, 0], torch.tensor([[0.25, 0.75], [0.5, 0.125]]), rtol=0, atol=0)
    assert torch.equal(output[:, 1], torch.zeros(2, 2))


def test_a_wrapped_network_is_unwrapped():
    network = FixedSamples(torch.tensor([[[0.5]], [[1.0]]]))
    output = MonteCarloPriorInferer(2)(torch.zeros(1, 1, 8, 8), Wrapped(network))
    torch.testing.assert_close(output, torch.tensor([[[0.75], [0.25]]]), rtol=0, atol=1e-7)


def test_mean_is_what_vkdnet_averages_with_the_same_draws():
    network = tiny_vkd()
    images = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.manual_seed(7)
        output = MonteCarloPriorInferer(num_samples=5)(images, network)
        network.num_inference_samples = 5
        torch.manual_seed(7)
        reference = network(images)
        network.num_inference_samples = 0
        deterministic = MonteCarloPriorInferer(num_samples=0)(images, network)
    torch.testing.assert_close(output[:, 0], reference, rtol=0, atol=1e-6)
    assert (output[:, 1] > 0).all()  # a learnt, non-degenerate prior spreads the draws
    torch.testing.assert_close(deterministic[:, 0], network(images), rtol=0, atol=0)
    assert torch.equal(deterministic[:, 1], torch.zeros(2, 3))


def test_negative_sample_count_is_refused():
    with pytest.raises(ValueError, match="num_samples must be >= 0, got -1"):
        MonteCarloPriorInferer(-1)
