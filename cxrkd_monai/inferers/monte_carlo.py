"""VKD image-only inference: Monte Carlo sampling of the prior ``p(z|x)``."""

from __future__ import annotations

import torch
from monai.inferers import Inferer
from torch import nn

__all__ = ["MonteCarloPriorInferer"]


class MonteCarloPriorInferer(Inferer):
    """Predicts ``p(y|x) ≈ mean_l σ(f([z_l ; h_x]))`` with ``z_l ~ p(z|x)`` and its spread.

    Args:
        num_samples: L prior samples; 0 is deterministic (``z = μ_p``), with zero spread.

    Returns a tensor ``(B, 2, C)``: ``[:, 0]`` the mean probability, ``[:, 1]`` the standard deviation over
    the L samples (the per-class uncertainty). Split it with ``SplitDimd(keys="pred", dim=0,
    output_postfixes=["prob", "std"], keepdim=False)`` after decollation. The text encoder is never used.
    """

    def __init__(self, num_samples: int = 0) -> None:
        super().__init__()
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}.")
        self.num_samples = num_samples

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args, **kwargs) -> torch.Tensor:
        network = getattr(network, "module", network)
        samples = network.sample_probabilities(inputs, self.num_samples)
        std = samples.std(dim=0, unbiased=False) if samples.shape[0] > 1 else torch.zeros_like(samples[0])
        return torch.stack([samples.mean(dim=0), std], dim=1)
