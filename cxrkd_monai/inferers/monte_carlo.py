"""VKD image-only inference: Monte Carlo sampling of the prior ``p(z|x)``, seeded per image."""

from __future__ import annotations

import hashlib

import torch
from monai.inferers import Inferer
from torch import nn

__all__ = ["MonteCarloPriorInferer", "image_seeds", "per_image_noise"]


def image_seeds(images: torch.Tensor, seed: int = 0) -> list[int]:
    """One seed per image of ``images`` ``(B, C, *S)``: what identifies an image is its content.

    Each seed is the first 63 bits of a BLAKE2b digest of ``seed``, the image's shape and its pixels as
    contiguous little-endian float32 (as the network receives them), so it depends on nothing else: not on the
    other images of the batch, their order, the file name, the device or the process.
    """
    pixels = images.detach().as_subclass(torch.Tensor).to(device="cpu", dtype=torch.float32).contiguous()
    seeds = []
    for image in pixels:
        digest = hashlib.blake2b(digest_size=8)
        digest.update(f"{seed} {tuple(image.shape)}".encode())
        digest.update(image.numpy().astype("<f4", copy=False).tobytes())
        seeds.append(int.from_bytes(digest.digest(), "little") >> 1)
    return seeds


def per_image_noise(images: torch.Tensor, num_samples: int, latent_dim: int, seed: int = 0) -> torch.Tensor:
    """Standard normal draws ``(num_samples, B, latent_dim)``, image ``b``'s from its own generator.

    Image ``b`` draws ``torch.randn(num_samples, latent_dim)`` from a CPU ``torch.Generator`` seeded with
    ``image_seeds(images, seed)[b]``, so its draws are the same alone or in any batch, and on any device. The
    draws are returned on ``images``' device, in float32. The global RNG is not touched.
    """
    draws = [
        torch.randn(num_samples, latent_dim, generator=torch.Generator().manual_seed(image_seed))
        for image_seed in image_seeds(images, seed)
    ]
    return torch.stack(draws, dim=1).to(images.device)


class MonteCarloPriorInferer(Inferer):
    """Predicts ``p(y|x) ≈ mean_l σ(f([z_l ; h_x]))`` with ``z_l ~ p(z|x)`` and its spread.

    The L draws of an image come from a generator seeded by ``seed`` and the image's content
    (:func:`per_image_noise`): an image gets the same probabilities alone, in any batch and at any position in
    it, in every run and on CPU or GPU (up to floating-point rounding of the network), which is what a deployed
    model must give: one answer per image. Two different images get independent draws; the same pixels get
    the same answer whatever their file is called.

    Args:
        num_samples: L prior samples; 0 is deterministic (``z = μ_p``), with zero spread.
        seed: the base seed of the per-image draws.

    Returns a tensor ``(B, 2, C)``: ``[:, 0]`` the mean probability, ``[:, 1]`` the standard deviation over
    the L samples (the per-class uncertainty). Split it with ``SplitDimd(keys="pred", dim=0,
    output_postfixes=["prob", "std"], keepdim=False)`` after decollation. The text encoder is never used.
    ``network`` is a :class:`~cxrkd_monai.networks.VKDNet` (or its TorchScript export, or a DDP wrapper of
    either): ``network.sample_probabilities(image, L, noise)`` is called with the noise of
    :func:`per_image_noise` (``None`` for L = 0).
    """

    def __init__(self, num_samples: int = 0, seed: int = 0) -> None:
        super().__init__()
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}.")
        self.num_samples = num_samples
        self.seed = seed

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args, **kwargs) -> torch.Tensor:
        network = getattr(network, "module", network)
        noise = None
        if self.num_samples > 0:
            noise = per_image_noise(inputs, self.num_samples, int(network.latent_dim), self.seed)
        samples = network.sample_probabilities(inputs, self.num_samples, noise)
        std = samples.std(dim=0, unbiased=False) if samples.shape[0] > 1 else torch.zeros_like(samples[0])
        return torch.stack([samples.mean(dim=0), std], dim=1)
