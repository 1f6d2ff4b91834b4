"""Fully convolutional fracture detector: a ResNet backbone with a top-down feature pyramid."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import FeaturePyramidNetwork
from monai.networks.layers import Conv
from monai.networks.nets.resnet import ResNet
from torch import nn

from cxrkd_monai.networks.pretrained import load_resnet_imagenet, wants_imagenet_weights

__all__ = ["FractureFPN"]


class FractureFPN(nn.Module):
    """One probability map per fracture type, predicted by a ResNet backbone and a feature pyramid.

    The backbone is MONAI's :class:`~monai.networks.nets.resnet.ResNet` (basic blocks, a stride-2 stem
    and max-pool, so its four stages sit at strides 4, 8, 16 and 32). MONAI's
    :class:`~monai.networks.blocks.FeaturePyramidNetwork` merges the stages top-down, and a small
    convolutional head turns the pyramid level at ``output_stride`` into ``num_classes`` logit maps.
    ``sigmoid`` of a map is the per-pixel fracture probability, and the image-level score of a type is
    the maximum of its map.

    Args:
        in_channels: image channels (1 for radiographs).
        num_classes: fracture types, one output map each.
        spatial_dims: 2 for radiographs.
        layers: residual blocks in each of the four backbone stages; ``(2, 2, 2, 2)`` is ResNet-18.
        fpn_channels: channels of the feature pyramid and of the head.
        output_stride: 4 or 8, the input pixels per output map pixel along each axis.
        block_inplanes: channels of the four backbone stages.
        pretrained: initialise the backbone from torchvision's ImageNet ResNet-18 (``layers=(2, 2, 2, 2)``) or
            ResNet-34 (``(3, 4, 6, 3)``) weights, fetched by URL; the first convolution takes the sum of the
            RGB filters. The pyramid and head start from random weights.
        backbone_weights: a local ResNet state dict (torchvision key layout) to initialise the backbone from
            instead of downloading; given, it is loaded whatever ``pretrained`` says.

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
        layers: Sequence[int] = (2, 2, 2, 2),
        fpn_channels: int = 64,
        output_stride: int = 4,
        block_inplanes: Sequence[int] = (64, 128, 256, 512),
        pretrained: bool = False,
        backbone_weights: str | None = None,
    ) -> None:
        super().__init__()
        if output_stride not in (4, 8):
            raise ValueError(f"output_stride must be 4 or 8, got output_stride={output_stride}.")
        if len(layers) != 4 or len(block_inplanes) != 4:
            raise ValueError(
                f"layers and block_inplanes need one entry per backbone stage (4), got layers={tuple(layers)}, "
                f"block_inplanes={tuple(block_inplanes)}."
            )
        self.spatial_dims = spatial_dims
        self.output_stride = output_stride
        self.backbone = ResNet(
            block="basic",
            layers=list(layers),
            block_inplanes=list(block_inplanes),
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_stride=2,
            feed_forward=False,
            # No bias before the batch norm, as in torchvision's ResNet, whose parameter names this then has.
            bias_downsample=False,
        )
        if wants_imagenet_weights(pretrained, backbone_weights):
            load_resnet_imagenet(self.backbone, layers, block_inplanes, in_channels, backbone_weights)
        # Stages coarser than the output level still feed the pyramid top-down; finer ones are unused.
        self.first_stage = 1 if output_stride == 4 else 2
        stages = range(self.first_stage, 5)
        self.fpn = FeaturePyramidNetwork(
            spatial_dims=spatial_dims,
            in_channels_list=[block_inplanes[stage - 1] for stage in stages],
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
        backbone = self.backbone
        x = backbone.maxpool(backbone.act(backbone.bn1(backbone.conv1(image))))
        stage1 = backbone.layer1(x)
        stage2 = backbone.layer2(stage1)
        stage3 = backbone.layer3(stage2)
        stage4 = backbone.layer4(stage3)
        features: dict[str, torch.Tensor] = {}
        if self.first_stage == 1:
            features["stage1"] = stage1
        features["stage2"] = stage2
        features["stage3"] = stage3
        features["stage4"] = stage4
        # The pyramid returns its finest level first, which is the level at output_stride.
        finest = list(self.fpn(features).values())[0]
        return self.head(finest)
