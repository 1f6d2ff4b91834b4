"""MonteCarloPriorInferer: the mean and spread of L prior draws, against hand-computed figures and VKDNet itself;
the draws seeded per image, so that an image's answer does not depend on its batch."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
from monai.networks.nets import DenseNet
from torch import nn

from cxrkd_monai.inferers import MonteCarloPriorInferer, image_seeds, per_image_noise
from cxrkd_monai.networks import VKDNet


class FixedSamples(nn.Module):
    """Stands in for VKDNet: ``sample_probabilities`` returns given draws ``(L, B, C)``, whatever the image."""

    latent_dim = 4

    def __init__(self, samples: torch.Tensor) -> None:
        super().__init__()
        self.samples = samples
        self.requested = []

    def sample_probabilities(self, image: torch.Tensor, num_samples: int, noise: torch.Tensor | None) -> torch.Tensor:
        self.requested.append((num_samples, None if noise is None else tuple(noise.shape)))
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
    assert network.requested == [(3, (3, 1, 4))]  # (L, B, latent_dim) per-image draws


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
        output = MonteCarloPriorInferer(num_samples=5)(images, network)
        # image b's draws: torch.randn(L, D) from a generator seeded with image b's seed
        noise = torch.stack(
            [torch.randn(5, 4, generator=torch.Generator().manual_seed(seed)) for seed in image_seeds(images)], dim=1
        )
        reference = network.sample_probabilities(images, 5, noise).mean(dim=0)
        deterministic = MonteCarloPriorInferer(num_samples=0)(images, network)
    torch.testing.assert_close(output[:, 0], reference, rtol=0, atol=1e-6)
    assert (output[:, 1] > 0).all()  # a learnt, non-degenerate prior spreads the draws
    torch.testing.assert_close(deterministic[:, 0], network(images), rtol=0, atol=0)
    assert torch.equal(deterministic[:, 1], torch.zeros(2, 3))


def test_negative_sample_count_is_refused():
    with pytest.raises(ValueError, match="num_samples must be >= 0, got -1"):
        MonteCarloPriorInferer(-1)


def test_an_image_gets_the_same_answer_alone_and_in_any_batch():
    """One answer per image: the draws follow the image, not the batch it came in or its place there."""
    network = tiny_vkd()
    images = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    inferer = MonteCarloPriorInferer(num_samples=8)
    with torch.no_grad():
        alone = inferer(images[1:2], network)
        in_batch = inferer(images, network)
        reordered = inferer(images[[2, 1, 0]], network)
        with_itself = inferer(images[[1, 1]], network)
    assert (alone[:, 1] > 0).all()  # a real spread: the draws are not all at the mean
    for answer in (in_batch[1:2], reordered[1:2], with_itself[0:1], with_itself[1:2]):
        torch.testing.assert_close(answer, alone, rtol=0, atol=1e-6)
    torch.testing.assert_close(reordered[[2, 1, 0]], in_batch, rtol=0, atol=1e-6)


def test_draws_are_reproducible_independent_per_image_and_leave_the_global_rng_alone():
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    state = torch.get_rng_state()
    noise = per_image_noise(images, 6, 4)
    assert torch.equal(torch.get_rng_state(), state)
    assert noise.shape == (6, 2, 4) and noise.dtype == torch.float32
    assert torch.equal(per_image_noise(images, 6, 4), noise)
    assert not torch.equal(noise[:, 0], noise[:, 1])
    assert not torch.equal(per_image_noise(images, 6, 4, seed=1), noise)
    # the seed is BLAKE2b of the base seed, the shape and the float32 pixels: written out here, it is the contract
    digest = hashlib.blake2b(b"0 (1, 8, 8)" + images[0].numpy().astype("<f4").tobytes(), digest_size=8).digest()
    assert image_seeds(images)[0] == int.from_bytes(digest, "little") >> 1
    changed = images.clone()
    changed[1, 0, 4, 4] += 1e-3
    assert image_seeds(changed) == [image_seeds(images)[0], *image_seeds(changed)[1:]]
    assert image_seeds(changed)[1] != image_seeds(images)[1]


def test_noise_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"noise must have shape \(num_samples, B, latent_dim\) = \[2, 1, 4\]"):
        tiny_vkd().sample_probabilities(torch.rand(1, 1, 16, 16), 2, torch.zeros(2, 1, 3))
