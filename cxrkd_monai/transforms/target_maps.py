"""Render fracture annotations as the per-type target maps that the detector is trained against."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform

__all__ = ["FractureTargetMapd"]


class FractureTargetMapd(MapTransform):
    """Draw one Gaussian blob per annotated fracture into a ``(K, *S / output_stride)`` map.

    Runs after ``Letterboxd``, so ``boxes`` (``(N, 2D + 1)``, ``[x1, y1, x2, y2, class_index]``) and
    ``points`` (``(N, D + 1)``, ``[x, y, class_index]``) are in network-grid pixels. The map has the
    detector's output resolution: map pixel ``m`` covers grid pixels ``[m * s, (m + 1) * s)`` and its
    centre is at ``(m + 0.5) * s``, with ``s = output_stride``.

    Blob shape (a design choice; the method only asks for "a Gaussian per point, a box-sized blob per
    box"):

        - each blob is an axis-aligned Gaussian ``exp(-sum_i (m_i - c_i)^2 / (2 sigma_i^2))`` evaluated on
          map-pixel indices, with ``c`` the map pixel that contains the annotation's centre, so every
          annotation reaches exactly 1 on the map pixel it falls in, however small it is;
        - a point has ``sigma_i = point_sigma`` map pixels;
        - a box is centred on its middle and has ``sigma_i = box side_i * box_sigma_scale / s``, so the
          blob stretches with the box (about 95% of its mass within the box for the default 0.25);
        - overlapping blobs of one type combine by maximum, keeping every map value in ``[0, 1]``.

    Items without annotations (``D_N`` and ``D_P``) get an all-zero map.

    Next to the map, ``annotated_key`` receives a bool ``(K,)`` tensor that is True for the types with at
    least one box or point. A zero channel means "no fracture here" only where it is annotated or the
    record says the type is absent; stage 2 uses this mask to hand a record-positive type without regions
    to the teacher instead (see :class:`~cxrkd_monai.engines.TeacherStudentTrainer`).

    Args:
        num_classes: fracture types ``K``, the channels of the map.
        output_stride: grid pixels per map pixel along each axis; the grid must be divisible by it.
        image_key: key of the letterboxed image ``(C, *S)``, which gives the grid size.
        box_key: key of the grid-space boxes.
        point_key: key of the grid-space points.
        target_key: key the float32 map ``(K, *S / output_stride)`` is written to.
        annotated_key: key the bool ``(K,)`` mask of annotated types is written to.
        point_sigma: standard deviation of a point's blob, in map pixels.
        box_sigma_scale: standard deviation of a box's blob as a fraction of the box side.

    Example::

        >>> render = FractureTargetMapd(num_classes=2, output_stride=4)
        >>> item = render({"image": torch.zeros(1, 64, 64), "points": np.array([[18.0, 41.0, 1]])})
        >>> item["target"].shape, item["target"][1, 4, 10].item(), item["annotated"]
        (torch.Size([2, 16, 16]), 1.0, tensor([False,  True]))
    """

    def __init__(
        self,
        num_classes: int = 2,
        output_stride: int = 4,
        image_key: str = "image",
        box_key: str = "boxes",
        point_key: str = "points",
        target_key: str = "target",
        annotated_key: str = "annotated",
        point_sigma: float = 2.0,
        box_sigma_scale: float = 0.25,
    ) -> None:
        super().__init__(keys=[box_key, point_key], allow_missing_keys=True)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got num_classes={num_classes}.")
        if output_stride < 1:
            raise ValueError(f"output_stride must be >= 1, got output_stride={output_stride}.")
        if point_sigma <= 0:
            raise ValueError(f"point_sigma must be positive, got point_sigma={point_sigma}.")
        if box_sigma_scale <= 0:
            raise ValueError(f"box_sigma_scale must be positive, got box_sigma_scale={box_sigma_scale}.")
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.image_key = image_key
        self.box_key = box_key
        self.point_key = point_key
        self.target_key = target_key
        self.annotated_key = annotated_key
        self.point_sigma = point_sigma
        self.box_sigma_scale = box_sigma_scale

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        grid = tuple(int(s) for s in d[self.image_key].shape[1:])
        if any(s % self.output_stride for s in grid):
            raise ValueError(
                f"'{self.image_key}' grid size {grid} is not divisible by output_stride={self.output_stride}."
            )
        map_size = tuple(s // self.output_stride for s in grid)
        dims = len(grid)
        target = np.zeros((self.num_classes, *map_size), dtype=np.float64)
        indices = np.indices(map_size, dtype=np.float64)

        boxes = self._annotations(d, self.box_key, 2 * dims + 1)
        points = self._annotations(d, self.point_key, dims + 1)
        # (key, centre in grid pixels, sigma in map pixels, class index) of every blob
        blobs = [
            (
                self.box_key,
                (box[:dims] + box[dims:-1]) / 2,
                (box[dims:-1] - box[:dims]) * self.box_sigma_scale / self.output_stride,
                box[-1],
            )
            for box in boxes
        ]
        blobs += [(self.point_key, point[:dims], np.full(dims, self.point_sigma), point[-1]) for point in points]
        column = (-1, *([1] * dims))
        annotated = torch.zeros(self.num_classes, dtype=torch.bool)
        for key, centre, sigma, class_index in blobs:
            channel = self._channel(class_index, key)
            annotated[channel] = True
            centre_pixel = np.clip(np.floor(centre / self.output_stride), 0, np.asarray(map_size) - 1)
            offsets = (indices - centre_pixel.reshape(column)) / sigma.reshape(column)
            np.maximum(target[channel], np.exp(-0.5 * np.sum(offsets**2, axis=0)), out=target[channel])
        d[self.target_key] = torch.as_tensor(target, dtype=torch.float32)
        d[self.annotated_key] = annotated
        return d

    def _annotations(self, d: Mapping[Hashable, Any], key: str, width: int) -> np.ndarray:
        values = d.get(key)
        if values is None or len(values) == 0:
            return np.zeros((0, width))
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != width:
            raise ValueError(f"'{key}' must have shape (N, {width}), got shape {values.shape}.")
        return values

    def _channel(self, class_index: float, key: str) -> int:
        channel = int(class_index)
        if channel != class_index or not 0 <= channel < self.num_classes:
            raise ValueError(f"'{key}' has class index {class_index}, outside [0, {self.num_classes}).")
        return channel
