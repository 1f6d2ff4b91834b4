"""Saliency drawn over its radiograph as an RGB thumbnail, for reports and inference outputs."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

__all__ = ["heat_colours", "saliency_overlay", "saliency_to_png_array"]


def _rows_cols(array: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """A package-convention ``(W, H)`` or ``(1, W, H)`` array as display rows x columns ``(H, W)``."""
    array = np.asarray(array.detach().cpu() if isinstance(array, torch.Tensor) else array, dtype=np.float64)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"{name} must be (W, H) or (1, W, H), got shape {array.shape}.")
    return np.clip(array, 0.0, 1.0).T


def heat_colours(values: np.ndarray) -> np.ndarray:
    """The "hot" colour ramp (black, red, yellow, white) for values in ``[0, 1]``: ``(...)`` -> ``(..., 3)``."""
    values = np.clip(values, 0.0, 1.0)[..., None]
    return np.clip(3.0 * values - np.array([0.0, 1.0, 2.0]), 0.0, 1.0)


def saliency_to_png_array(saliency: np.ndarray | torch.Tensor) -> np.ndarray:
    """A ``(W, H)`` or ``(1, W, H)`` map in ``[0, 1]`` as an 8-bit grey image ``(H, W)`` (rows, columns)."""
    return np.round(_rows_cols(saliency, "saliency") * 255.0).astype(np.uint8)


def saliency_overlay(
    image: np.ndarray | torch.Tensor,
    saliency: np.ndarray | torch.Tensor,
    opacity: float = 0.6,
    max_size: int | None = 256,
) -> np.ndarray:
    """Blend a saliency map over its radiograph: an RGB ``uint8`` image ``(rows, columns, 3)``.

    Args:
        image: the radiograph ``(W, H)`` or ``(1, W, H)`` in ``[0, 1]`` (the package's axis convention).
        saliency: its map, same spatial shape, in ``[0, 1]`` (e.g. from
            :func:`~cxrkd_monai.visualize.explain_radiograph`).
        opacity: colour weight where the saliency is 1; each pixel mixes ``opacity * saliency`` of the heat
            colour into the grey radiograph, so regions without saliency show the plain image.
        max_size: longest side of the returned thumbnail (downscaled with the aspect ratio kept, never
            enlarged); ``None`` keeps the full size.

    Example::

        image, saliency_map, _ = explain_radiograph(VKDSaliency(net), "images/p0001_s01.png", (224, 224))
        PIL.Image.fromarray(saliency_overlay(image, saliency_map)).save("p0001_s01_saliency.png")
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must lie in [0, 1], got {opacity}.")
    grey = _rows_cols(image, "image")
    heat = _rows_cols(saliency, "saliency")
    if grey.shape != heat.shape:
        raise ValueError(f"image and saliency differ in spatial shape: {grey.T.shape} and {heat.T.shape}.")
    weight = (opacity * heat)[..., None]
    blended = (1.0 - weight) * grey[..., None] + weight * heat_colours(heat)
    overlay = Image.fromarray(np.round(blended * 255.0).astype(np.uint8))
    if max_size is not None and max(overlay.size) > max_size:
        overlay.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    return np.asarray(overlay)
