"""From a letterboxed probability map to fracture detections and annotations in original-image pixels."""

from __future__ import annotations

import numpy as np
import torch

from cxrkd_monai.metrics.froc import find_peaks, peaks_to_grid
from cxrkd_monai.transforms.geometry import LetterboxGeometry

__all__ = ["annotations_to_original", "detect_in_original_pixels", "map_pixel_half_diagonal", "output_stride_of"]


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
        threshold, nms_kernel_size, max_peaks: see :func:`cxrkd_monai.metrics.froc.find_peaks`.

    Returns:
        one ``(N_k, D + 1)`` array per class: original-pixel coordinates (axis 0 = x) then the score.
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
        detections.append(class_peaks)
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
