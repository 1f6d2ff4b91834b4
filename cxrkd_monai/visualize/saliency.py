"""Grad-CAM saliency for VKD predictions: the image regions that drove a class logit of the image-only path.

VKD predicts from the image alone at inference (the text posterior exists only in training), so the explained
score is the classifier logit of the prior path at the prior mean, ``f_c([mu_p(h_x) ; h_x])``: the deterministic
centre of the Monte Carlo prediction that the bundle's inferer averages. MONAI's :class:`~monai.visualize.GradCAM`
(or :class:`~monai.visualize.GradCAMpp`) weights the feature maps of a layer of the image encoder by the mean
gradient of that logit and keeps the positive part. The default layer is ``image_encoder.class_layers.relu`` of
the DenseNet-121 encoder: the rectified output of its last dense block (after ``norm5``), the feature maps that
global pooling turns into ``h_x``. :data:`SALIENCY_TARGET_LAYERS` names the same maps for each ``backbone``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.visualize import GradCAM, GradCAMpp
from torch import Tensor, nn

from cxrkd_monai.networks.vkd import VKDNet
from cxrkd_monai.transforms.geometry import Letterboxd, LetterboxGeometry
from cxrkd_monai.transforms.io import LoadCXR

__all__ = [
    "DEFAULT_TARGET_LAYER",
    "SALIENCY_METHODS",
    "SALIENCY_TARGET_LAYERS",
    "VKDSaliency",
    "explain_radiograph",
    "scale_to_unit_peak",
]

SALIENCY_TARGET_LAYERS = {
    "densenet121": "image_encoder.class_layers.relu",
    "efficientnet-lite0": "image_encoder._head_activation",
}
"""By :class:`VKDNet` ``backbone``: the layer whose maps global pooling turns into ``h_x``."""

DEFAULT_TARGET_LAYER = SALIENCY_TARGET_LAYERS["densenet121"]
"""The rectified last dense-block features of :class:`VKDNet`'s default DenseNet-121 encoder."""

SALIENCY_METHODS = {"gradcam": GradCAM, "gradcampp": GradCAMpp}
"""Names accepted by :class:`VKDSaliency` ``method``."""


def scale_to_unit_peak(maps: Tensor) -> Tensor:
    """Divide each map of ``(B, 1, *spatial)`` by its maximum, so the peak is 1 and no evidence stays 0.

    Grad-CAM maps are non-negative; an all-zero map (no region raises the logit) is returned as zeros rather
    than stretched, unlike MONAI's default min-max normaliser (which also inverts the scale).
    """
    peaks = maps.flatten(1).amax(dim=1).view(-1, *[1] * (maps.dim() - 1))
    return maps / peaks.clamp_min(torch.finfo(maps.dtype).tiny)


class _PriorMeanLogit(nn.Module):
    """One logit per image from :meth:`VKDNet.sample_logits` at ``z = mu_p``: ``(B, C_in, *S)`` -> ``(B, 1)``."""

    def __init__(self, network: VKDNet) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: Tensor, classes: Tensor) -> Tensor:
        logits = self.network.sample_logits(image, 0)[0]
        return logits.gather(1, classes.view(-1, 1))


class VKDSaliency:
    """Grad-CAM (or Grad-CAM++) saliency of :class:`VKDNet`'s image-only prediction, one map per image.

    Args:
        network: the trained VKD network. The explainer works on its own deep copy, so the hooks that
            ``monai.visualize`` registers never touch the network being trained or run, and later weight
            changes of ``network`` are not seen (build a new explainer for new weights).
        target_layer: name (as in ``network.named_modules()``) of the layer whose feature maps are weighted.
            Must be a PyTorch module: a network whose encoder runs in ONNX Runtime has no gradients.
        method: ``"gradcam"`` or ``"gradcampp"``.

    Call with ``image`` ``(B, C_in, *spatial)`` and ``class_index`` (an int for every image, a sequence or a
    ``(B,)`` tensor of one class per image, or ``None`` for each image's most probable class); returns the
    maps ``(B, 1, *spatial)``, upsampled to the image's spatial shape (linear interpolation), each scaled by
    :func:`scale_to_unit_peak` into ``[0, 1]``. :attr:`last_classes` holds the explained class per image.

    Example::

        saliency = VKDSaliency(net)
        maps = saliency(torch.rand(2, 1, 224, 224))  # (2, 1, 224, 224), for each image's top class
    """

    def __init__(self, network: VKDNet, target_layer: str = DEFAULT_TARGET_LAYER, method: str = "gradcam") -> None:
        if method not in SALIENCY_METHODS:
            raise ValueError(f"method must be one of {sorted(SALIENCY_METHODS)}, got {method!r}.")
        layers = dict(network.named_modules())
        if target_layer not in layers:
            convolutional = [name for name, module in layers.items() if isinstance(module, nn.Conv2d | nn.Conv3d)]
            raise ValueError(
                f"target_layer {target_layer!r} is not a module of the network (a network whose encoder runs in "
                f"ONNX Runtime has none: explain with the PyTorch backend). Its last convolutions: "
                f"{convolutional[-3:]}."
            )
        self.num_classes = network.num_classes
        self.model = _PriorMeanLogit(copy.deepcopy(network)).requires_grad_(True)
        self.cam = SALIENCY_METHODS[method](
            nn_module=self.model, target_layers=f"network.{target_layer}", postprocessing=scale_to_unit_peak
        )
        self.last_classes: Tensor | None = None

    def __call__(self, image: Tensor, class_index: int | Sequence[int] | Tensor | None = None) -> Tensor:
        parameter = next(self.model.parameters())
        image = torch.as_tensor(image).as_subclass(Tensor).to(device=parameter.device, dtype=parameter.dtype)
        classes = self._classes(image, class_index)
        with torch.enable_grad():
            # One image at a time: MONAI's Grad-CAM++ broadcasts the (B,) class scores against the last spatial
            # axis of the (B, C, *S) gradients, which is only right for a single image.
            maps = torch.cat(
                [self.cam(image[i : i + 1], class_idx=0, classes=classes[i : i + 1]) for i in range(len(image))]
            )
        self.last_classes = classes.cpu()
        return maps.detach()

    def _classes(self, image: Tensor, class_index: int | Sequence[int] | Tensor | None) -> Tensor:
        batch = image.shape[0]
        if class_index is None:
            self.model.eval()
            with torch.no_grad():
                return self.model.network.sample_logits(image, 0)[0].argmax(dim=1)
        classes = torch.as_tensor(class_index, dtype=torch.long, device=image.device).reshape(-1)
        if classes.numel() == 1:
            classes = classes.expand(batch)
        if classes.numel() != batch:
            raise ValueError(f"class_index gives {classes.numel()} classes for a batch of {batch} images.")
        if classes.min() < 0 or classes.max() >= self.num_classes:
            raise ValueError(f"class_index must lie in [0, {self.num_classes}), got {classes.tolist()}.")
        return classes


def explain_radiograph(
    saliency: VKDSaliency, image_path: str | Path, image_size: Sequence[int], class_index: int | None = None
) -> tuple[Tensor, Tensor, int]:
    """Saliency of one radiograph file, on the file's own pixel grid.

    The file is loaded and letterboxed to ``image_size`` as the VKD bundle's preprocessing does, explained,
    and the map is cropped and resized back by the same :class:`LetterboxGeometry`.

    Returns:
        ``(image, saliency_map, class_index)``: the loaded image ``(1, W, H)`` in ``[0, 1]``, its map
        ``(1, W, H)`` in ``[0, 1]`` and the explained class (the most probable one when not given).
    """
    image = LoadCXR()(image_path)
    letterboxed = Letterboxd(keys="image", spatial_size=image_size)({"image": image})
    maps = saliency(letterboxed["image"][None], class_index)
    geometry = LetterboxGeometry.from_tensor(letterboxed["geometry"])
    saliency_map = geometry.grid_to_original_image(maps[0].cpu()).clamp(0.0, 1.0)
    return torch.as_tensor(image).as_subclass(Tensor), saliency_map, int(saliency.last_classes[0])
