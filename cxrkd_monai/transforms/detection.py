"""From a letterboxed probability map to fracture detections (peaks) and annotations in original-image pixels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from cxrkd_monai.transforms.geometry import LetterboxGeometry

__all__ = [
    "annotations_to_original",
    "detect_in_original_pixels",
    "find_peaks",
    "map_pixel_half_diagonal",
    "output_stride_of",
    "peaks_to_grid",
]

_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def find_peaks(
    prob_map: torch.Tensor | np.ndarray,
    threshold: float = 0.05,
    nms_kernel_size: int = 3,
    max_peaks: int = 20,
) -> list[np.ndarray]:
    """Local maxima of each class map, by max-pooling non-maximum suppression.

    A pixel is a peak if it equals the maximum of its ``nms_kernel_size`` neighbourhood and exceeds
    ``threshold``. Neighbouring peak pixels form a plateau of one value; a plateau yields a single
    detection at its centroid, so a flat-topped blob is not counted several times.

    Args:
        prob_map: probabilities ``(K, *S)`` of one image.
        threshold: minimum score of a detection (exclusive).
        nms_kernel_size: odd side of the suppression neighbourhood, in map pixels.
        max_peaks: detections kept per class, the highest-scoring ones.

    Returns:
        one float64 array per class, ``(N, D + 1)``: map-index coordinates (axis order of ``S``) then the
        score, sorted by decreasing score.

    Example::

        >>> prob = torch.zeros(1, 8, 8)
        >>> prob[0, 2, 5] = 0.75
        >>> find_peaks(prob)
        [array([[2.  , 5.  , 0.75]])]
    """
    if nms_kernel_size < 1 or nms_kernel_size % 2 == 0:
        raise ValueError(f"nms_kernel_size must be a positive odd integer, got nms_kernel_size={nms_kernel_size}.")
    prob = torch.as_tensor(prob_map).detach().to(device="cpu", dtype=torch.float64)
    dims = prob.ndim - 1
    if dims not in _MAX_POOL:
        raise ValueError(f"prob_map must have shape (K, *spatial) with 1-3 spatial axes, got {tuple(prob.shape)}.")
    pooled = _MAX_POOL[dims](prob[None], nms_kernel_size, stride=1, padding=nms_kernel_size // 2)[0]
    peak_mask = ((prob == pooled) & (prob > threshold)).numpy()
    values = prob.numpy()
    peaks = []
    for class_mask, class_values in zip(peak_mask, values):
        labels, count = ndimage.label(class_mask, structure=np.ones((3,) * dims))
        if count == 0:
            peaks.append(np.zeros((0, dims + 1)))
            continue
        index = np.arange(1, count + 1)
        centres = np.asarray(ndimage.center_of_mass(class_mask, labels, index), dtype=np.float64).reshape(count, dims)
        scores = np.asarray(ndimage.maximum(class_values, labels, index), dtype=np.float64)
        order = np.argsort(-scores, kind="stable")[:max_peaks]
        peaks.append(np.column_stack([centres[order], scores[order]]))
    return peaks


def peaks_to_grid(peaks: np.ndarray | Sequence[np.ndarray], output_stride: int) -> np.ndarray | list[np.ndarray]:
    """Map peak coordinates from map indices to network-grid pixels, ``(m + 0.5) * output_stride``.

    Args:
        peaks: one ``(N, D + 1)`` array of ``[coords..., score]``, or a list of them (one per class).
        output_stride: grid pixels per map pixel.

    Returns:
        the same structure, coordinates in grid pixels and scores unchanged.
    """
    if isinstance(peaks, np.ndarray):
        mapped = np.array(peaks, dtype=np.float64)
        mapped[:, :-1] = (mapped[:, :-1] + 0.5) * output_stride
        return mapped
    return [peaks_to_grid(np.asarray(class_peaks), output_stride) for class_peaks in peaks]




def output_stride_of(geometry: LetterboxGeometry, map_shape: tuple[int, ...]) -> int:
    """Network-grid pixels per map pixel, the same along every axis.

    Raises:
        ValueError: the map does not tile the letterbox grid evenly.
    """
    strides = {g / s for g, s in zip(geometry.grid_size, map_shape)}
    if len(strides) != 1 or not float(next(iter(strides))).is_integer():
        raise ValueError(
            f"Probability map of spatial shape {tuple(map_shape)} does not tile the grid {geometry.grid_size} "
            "with one integer output stride."
        )
    return int(next(iter(strides)))


def map_pixel_half_diagonal(geometry: torch.Tensor | LetterboxGeometry, map_shape: tuple[int, ...]) -> float:
    """Half the diagonal of one map pixel, in original pixels: how far a map-pixel centre can be from a point in it.

    A detection is placed at the centre of its map pixel, so this is the localisation error of a perfectly
    placed detection at worst. For a 3000 px radiograph letterboxed to 512 px at stride 4 it is about 33 px.

    Args:
        geometry: the item's letterbox geometry (``(4, D)`` tensor from :class:`Letterboxd`, or the object).
        map_shape: spatial shape ``S'`` of the probability map.
    """
    if not isinstance(geometry, LetterboxGeometry):
        geometry = LetterboxGeometry.from_tensor(torch.as_tensor(geometry).cpu())
    stride = output_stride_of(geometry, tuple(map_shape))
    return 0.5 * float(np.linalg.norm(stride / geometry.scale))


def detect_in_original_pixels(
    prob_map: torch.Tensor,
    geometry: torch.Tensor | LetterboxGeometry,
    threshold: float = 0.05,
    nms_kernel_size: int = 3,
    max_peaks: int = 20,
) -> list[np.ndarray]:
    """Peaks of one item's probability maps, as detections in the item's original pixels.

    Args:
        prob_map: ``(K, *S')`` probabilities at the network's output stride.
        geometry: the item's letterbox geometry (``(4, D)`` tensor from :class:`Letterboxd`, or the object).
        threshold, nms_kernel_size, max_peaks: see :func:`cxrkd_monai.transforms.find_peaks`.

    Returns:
        one ``(N_k, D + 1)`` array per class: original-pixel coordinates (axis 0 = x) then the score. A peak in
        the letterbox padding maps outside the image; it marks no place on the radiograph and is left out.
    """
    if not isinstance(geometry, LetterboxGeometry):
        geometry = LetterboxGeometry.from_tensor(torch.as_tensor(geometry).cpu())
    prob_map = torch.as_tensor(prob_map).detach().float().cpu()
    stride = output_stride_of(geometry, tuple(prob_map.shape[1:]))
    peaks = peaks_to_grid(
        find_peaks(prob_map, threshold=threshold, nms_kernel_size=nms_kernel_size, max_peaks=max_peaks), stride
    )
    detections = []
    for class_peaks in peaks:
        class_peaks = np.array(class_peaks, dtype=np.float64).reshape(-1, geometry.ndim + 1)
        class_peaks[:, : geometry.ndim] = geometry.to_original(class_peaks[:, : geometry.ndim])
        coords = class_peaks[:, : geometry.ndim]
        inside = np.all((coords >= 0) & (coords <= np.asarray(geometry.original_size, dtype=np.float64)), axis=1)
        detections.append(class_peaks[inside])
    return detections


def annotations_to_original(
    boxes: np.ndarray | torch.Tensor | None,
    points: np.ndarray | torch.Tensor | None,
    geometry: torch.Tensor | LetterboxGeometry,
) -> tuple[np.ndarray, np.ndarray]:
    """Map an item's letterboxed ``boxes`` ``(M, 2D + 1)`` and ``points`` ``(M, D + 1)`` back to original pixels.

    Missing annotations (``None``) become empty arrays, so record-negative items need no special case.
    """
    if not isinstance(geometry, LetterboxGeometry):
        geometry = LetterboxGeometry.from_tensor(torch.as_tensor(geometry).cpu())
    d = geometry.ndim
    boxes = np.zeros((0, 2 * d + 1)) if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 2 * d + 1)
    points = np.zeros((0, d + 1)) if points is None else np.array(points, dtype=np.float64).reshape(-1, d + 1)
    if len(boxes):
        boxes = geometry.boxes_to_original(boxes)
    if len(points):
        points[:, :d] = geometry.to_original(points[:, :d])
    return boxes, points
