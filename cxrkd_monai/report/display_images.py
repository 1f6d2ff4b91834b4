"""Radiographs and saved probability maps as ``(H, W)`` arrays for display, downsampled to a thumbnail size.

Images are read with the package's loader (:class:`~cxrkd_monai.transforms.LoadCXR`: DICOM, PNG/JPEG or NIfTI into
``(1, W, H)`` in [0, 1], bone bright), as the bundles read them; probability maps are the NIfTI ``(W, H, 1, K)``
files the fracture recorder writes, over the original image; saliency maps are the 8-bit PNGs of the VKD saliency
writer, upright over the original image.
"""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from cxrkd_monai.transforms.io import LoadCXR

__all__ = ["load_display_image", "load_probability_map", "load_saliency_map"]


def _downsampled(array: np.ndarray, max_side: int) -> np.ndarray:
    step = max(1, math.ceil(max(array.shape) / max_side))
    return array[::step, ::step]


def load_display_image(path: str | Path, max_side: int = 512) -> tuple[np.ndarray, tuple[int, int]]:
    """``(image (h, w) in [0, 1], (W, H))``: the radiograph rows by columns, every ``k``-th pixel so that its longer
    side is at most ``max_side``, and its original width and height."""
    loaded = np.asarray(LoadCXR()(str(path)))[0]  # (W, H)
    width, height = loaded.shape
    return _downsampled(loaded.T, max_side), (width, height)


def load_probability_map(path: str | Path, max_side: int = 512) -> np.ndarray:
    """``(h, w, K)`` the saved probability map of each type, rows by columns, downsampled like the image.

    Raises:
        ValueError: the file is not a ``(W, H, 1, K)`` map (named).
    """
    data = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
    if data.ndim != 4 or data.shape[2] != 1:
        raise ValueError(f"Probability map {str(path)!r} has shape {data.shape}, expected (W, H, 1, K).")
    return _downsampled(np.transpose(data[:, :, 0, :], (1, 0, 2)), max_side)


def load_saliency_map(path: str | Path, max_side: int = 512) -> np.ndarray:
    """``(h, w)`` a saved saliency PNG in [0, 1] (rows by columns, as the source image), downsampled like it."""
    with Image.open(path) as image:
        return _downsampled(np.asarray(image.convert("L"), dtype=np.float32) / 255.0, max_side)
