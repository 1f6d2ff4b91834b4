"""VKD's two paths side by side: the text posterior's prediction next to the image-only prior's."""

from __future__ import annotations

import torch
from monai.inferers import Inferer
from torch import nn

__all__ = ["PosteriorPriorInferer"]


class PosteriorPriorInferer(Inferer):
    """Deterministic class probabilities of the posterior path ``f(mu_q)`` and of the prior path ``f(mu_p)``.

    A validation of a VKD run compares the two: a posterior AUROC well above the prior's says the text reaches
    ``z`` and the prior has not yet caught up; equal AUROCs, with the classifier reading ``[z ; h_x]``, can mean
    that the posterior path ignores ``z`` and predicts from the image feature alone. Both paths are read at the
    means of their Gaussians, so the comparison has no sampling noise.

    Call it as ``inferer(image, network, text_features=h_t)`` (a :class:`monai.engines.SupervisedEvaluator` does
    with the keyword arguments of :class:`~cxrkd_monai.engines.PrepareTextBatch`).

    Returns a tensor ``(B, 2, C)``: ``[:, 0]`` the posterior path's probabilities, ``[:, 1]`` the prior path's.
    Split it with ``SplitDimd(keys="pred", dim=0, output_postfixes=["posterior", "prior"], keepdim=False)`` after
    decollation.
    """

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args, text_features: torch.Tensor, **kwargs):
        network = getattr(network, "module", network)
        output = network.forward_train(inputs, text_features, num_samples=0)
        return torch.sigmoid(torch.stack([output.posterior_logits[0], output.prior_logits[0]], dim=1))
