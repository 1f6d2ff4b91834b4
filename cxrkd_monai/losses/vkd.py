"""The VKD training objective: posterior BCE, closed-form KL(q || p) and prior BCE.

``L = BCE(f([z_q ; h_x]), y) + beta * KL(q(z|x,t) || p(z|x)) + gamma * BCE(f([z_p ; h_x]), y)``

The KL in ``L`` is reduced over the latent dimensions as ``kl_reduction`` says: ``"mean"`` (the KL per
dimension, as in the authors' code, against which their ``beta`` was set) or ``"sum"`` (the KL itself, D times
larger for a D-dimensional latent).

The KL runs from the text posterior ``q`` to the image-only prior ``p`` (the direction of the ELBO), and
both Gaussians are parametrised by their log-variance, whose scale is ``exp(0.5 * logvar)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxrkd_monai.networks.vkd import VKDOutput

__all__ = ["KL_REDUCTIONS", "VKDLoss", "kl_diagonal_gaussians"]


KL_REDUCTIONS = ("mean", "sum")
"""``kl_reduction`` values: the KL per latent dimension (the authors' code), or the KL summed over dimensions."""


def kl_diagonal_gaussians(
    mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor, reduction: str = "sum"
) -> Tensor:
    """``KL(q || p)`` between diagonal Gaussians given by means and log-variances, reduced over the last axis.

    ``0.5 * sum_d [logvar_p - logvar_q + (exp(logvar_q) + (mu_q - mu_p)^2) / exp(logvar_p) - 1]``, the
    divergence itself (``reduction="sum"``), or that sum divided by ``D`` (``reduction="mean"``).

    Args:
        mu_q: mean of ``q``, ``(B, D)``.
        logvar_q: log-variance of ``q``, ``(B, D)``.
        mu_p: mean of ``p``, ``(B, D)``.
        logvar_p: log-variance of ``p``, ``(B, D)``.
        reduction: ``"sum"`` or ``"mean"`` over the ``D`` latent dimensions.

    Returns:
        ``(B,)``, one divergence per batch item.

    Example::

        kl = kl_diagonal_gaussians(torch.zeros(2, 4), torch.zeros(2, 4), torch.ones(2, 4), torch.zeros(2, 4))
        # tensor([2., 2.]): 0.5 * 4 * 1^2
    """
    if reduction not in KL_REDUCTIONS:
        raise ValueError(f"reduction must be one of {KL_REDUCTIONS}, got {reduction!r}.")
    shapes = {"mu_q": mu_q.shape, "logvar_q": logvar_q.shape, "mu_p": mu_p.shape, "logvar_p": logvar_p.shape}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"mu_q, logvar_q, mu_p and logvar_p must share one shape, got {shapes}.")
    # (sigma_q^2 + d^2) / sigma_p^2 written with exp(-logvar_p) so no division by a vanishing variance.
    ratio = (torch.exp(logvar_q) + (mu_q - mu_p).pow(2)) * torch.exp(-logvar_p)
    per_dimension = 0.5 * (logvar_p - logvar_q + ratio - 1.0)
    return per_dimension.mean(dim=-1) if reduction == "mean" else per_dimension.sum(dim=-1)


class VKDLoss(nn.Module):
    """VKD objective on a :class:`~cxrkd_monai.networks.VKDOutput`, as a dict of its terms.

    ``loss = bce_posterior + beta * KL_r + gamma * bce_prior``, where each BCE is averaged over Monte Carlo
    samples, classes and batch (over the observed labels only when ``mask`` is given) and ``KL_r`` is
    ``KL(q || p)`` averaged over the batch and reduced over the ``D`` latent dimensions by ``kl_reduction``:
    ``kl_per_dim = kl / D`` for ``"mean"``, ``kl`` for ``"sum"``. Both are reported whatever the reduction.
    Without a posterior (the image-only baseline) the loss is ``bce_prior`` alone, and ``bce_posterior``,
    ``kl`` and ``kl_per_dim`` are reported as 0.

    Args:
        beta: weight of the KL term; a plain attribute so that an annealing handler can set it every step.
        gamma: weight of the prior-path BCE; 0 gives the pure ELBO.
        pos_weight: optional per-class weight of positive labels, ``(C,)``, as in
            :class:`torch.nn.BCEWithLogitsLoss`.
        kl_reduction: ``"mean"`` (the KL per latent dimension, as the authors' code, whose ``beta`` max of 1e-3
            goes with it) or ``"sum"`` (the KL itself, ``D`` times as heavy at the same ``beta``).

    Inputs of :meth:`forward`:
        - ``output``: logits ``(K, B, C)`` and Gaussians ``(B, D)`` from ``VKDNet.forward_train``.
        - ``target``: ``(B, C)`` binary labels.
        - ``mask``: optional ``(B, C)``, 1 where the label is observed and 0 where it is unknown; an unknown
          entry's target (0, 1 or NaN) changes neither the loss nor its gradient.

    Returns:
        ``{"loss", "bce_posterior", "kl", "kl_per_dim", "bce_prior"}``, each a scalar tensor, NaN or infinite
        as computed:
        :class:`~cxrkd_monai.engines.VKDTrainer` stops at the first non-finite term, naming it, the epoch, the
        iteration and the batch's images.

    Example::

        loss_fn = VKDLoss(beta=1e-3)
        terms = loss_fn(net.forward_train(images, text_features), labels)
        terms["loss"].backward()
    """

    def __init__(
        self,
        beta: float = 1e-3,
        gamma: float = 1.0,
        pos_weight: Sequence[float] | Tensor | None = None,
        kl_reduction: str = "mean",
    ):
        super().__init__()
        if kl_reduction not in KL_REDUCTIONS:
            raise ValueError(f"kl_reduction must be one of {KL_REDUCTIONS}, got {kl_reduction!r}.")
        self.kl_reduction = kl_reduction
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}.")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}.")
        self.beta = float(beta)
        self.gamma = float(gamma)
        if pos_weight is not None:
            pos_weight = torch.as_tensor(pos_weight, dtype=torch.float32)
            if pos_weight.dim() != 1 or bool((pos_weight <= 0).any()):
                raise ValueError(
                    f"pos_weight must be a 1-D sequence of positive weights, got {pos_weight.tolist()}."
                )
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, output: VKDOutput, target: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        target = self._checked(target, output.prior_logits, "target")
        if mask is not None:
            mask = self._checked(mask, output.prior_logits, "mask")
        bce_prior = self._bce(output.prior_logits, target, mask)
        zero = bce_prior.new_zeros(())
        if not output.has_posterior:
            return {"loss": bce_prior, "bce_posterior": zero, "kl": zero, "kl_per_dim": zero, "bce_prior": bce_prior}
        bce_posterior = self._bce(output.posterior_logits, target, mask)
        kl = kl_diagonal_gaussians(
            output.posterior_mu, output.posterior_logvar, output.prior_mu, output.prior_logvar
        ).mean()
        kl_per_dim = kl / output.prior_mu.shape[-1]
        loss = bce_posterior + self.beta * (kl_per_dim if self.kl_reduction == "mean" else kl) + self.gamma * bce_prior
        return {
            "loss": loss,
            "bce_posterior": bce_posterior,
            "kl": kl,
            "kl_per_dim": kl_per_dim,
            "bce_prior": bce_prior,
        }

    def _bce(self, logits: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
        """Mean BCE of logits ``(K, B, C)`` against ``(B, C)`` targets over the observed entries."""
        if self.pos_weight is not None and self.pos_weight.numel() != logits.shape[-1]:
            raise ValueError(
                f"pos_weight has {self.pos_weight.numel()} weights but the logits have "
                f"{logits.shape[-1]} classes."
            )
        target = target.unsqueeze(0).expand_as(logits)
        if mask is None:
            return F.binary_cross_entropy_with_logits(logits, target, pos_weight=self.pos_weight)
        weights = mask.unsqueeze(0).expand_as(logits)
        # An unobserved label may be anything, NaN included; it is replaced before the BCE so that neither the
        # value nor its gradient reaches the loss (0 * NaN would be NaN).
        target = torch.where(weights > 0, target, torch.zeros_like(target))
        losses = F.binary_cross_entropy_with_logits(logits, target, pos_weight=self.pos_weight, reduction="none")
        # A batch with no observed label contributes 0 rather than 0 / 0.
        return (losses * weights).sum() / weights.sum().clamp_min(torch.finfo(losses.dtype).eps)

    @staticmethod
    def _checked(values: Tensor, logits: Tensor, name: str) -> Tensor:
        if values.shape != logits.shape[1:]:
            raise ValueError(
                f"{name} must have shape (B, C) = {tuple(logits.shape[1:])} to match the logits "
                f"{tuple(logits.shape)} (K, B, C), got {tuple(values.shape)}."
            )
        return values.to(dtype=logits.dtype)
