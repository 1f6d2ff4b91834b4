"""Aspect-preserving resize with padding ("letterbox") and the coordinate mapping it implies.

Chest radiographs must keep the whole rib cage, so the network grid is reached by scaling the image
until its longest side fits and padding the rest, never by a centre crop. The same
:class:`LetterboxGeometry` object that is recorded on the way in maps network-grid coordinates (peaks,
boxes, points) and maps probability maps back to original pixels on the way out.

Coordinate convention: spatial axes follow MONAI's image readers, so for a 2D radiograph tensor of
shape ``(C, W, H)`` axis 0 is x (column) and axis 1 is y (row). Coordinates are continuous pixel
coordinates where pixel ``i`` spans ``[i, i + 1)``; its centre is ``i + 0.5``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform, Resize, SpatialPad

__all__ = ["LetterboxGeometry", "Letterboxd"]


@dataclass(frozen=True)
class LetterboxGeometry:
    """The affine map from original pixels to the padded network grid, axis by axis.

    Args:
        original_size: spatial size of the input, e.g. ``(W, H)``.
        resized_size: spatial size after the aspect-preserving resize.
        pad_before: padding added before each axis of the resized image.
        grid_size: spatial size of the padded network grid.
    """

    original_size: tuple[int, ...]
    resized_size: tuple[int, ...]
    pad_before: tuple[int, ...]
    grid_size: tuple[int, ...]

    @classmethod
    def fit(cls, original_size: Sequence[int], grid_size: Sequence[int]) -> LetterboxGeometry:
        """Geometry that scales ``original_size`` to fit inside ``grid_size``, centred."""
        if len(original_size) != len(grid_size):
            raise ValueError(f"original_size {tuple(original_size)} and grid_size {tuple(grid_size)} differ in rank.")
        if min(original_size) < 1:
            raise ValueError(f"original_size must be positive, got {tuple(original_size)}.")
        scale = min(g / o for g, o in zip(grid_size, original_size))
        resized = tuple(max(1, min(g, round(o * scale))) for o, g in zip(original_size, grid_size))
        pad = tuple((g - r) // 2 for g, r in zip(grid_size, resized))
        return cls(tuple(int(s) for s in original_size), resized, pad, tuple(int(g) for g in grid_size))

    @property
    def scale(self) -> np.ndarray:
        """Grid pixels per original pixel, per axis (equal up to rounding)."""
        return np.asarray(self.resized_size, dtype=np.float64) / np.asarray(self.original_size, dtype=np.float64)

    def to_grid(self, coords: np.ndarray | Sequence) -> np.ndarray:
        """Map original continuous coordinates ``(..., D)`` to network-grid coordinates."""
        coords = np.asarray(coords, dtype=np.float64)
        return coords * self.scale + np.asarray(self.pad_before, dtype=np.float64)

    def to_original(self, coords: np.ndarray | Sequence) -> np.ndarray:
        """Map network-grid coordinates ``(..., D)`` back to original continuous coordinates."""
        coords = np.asarray(coords, dtype=np.float64)
        return (coords - np.asarray(self.pad_before, dtype=np.float64)) / self.scale

    def boxes_to_grid(self, boxes: np.ndarray | Sequence) -> np.ndarray:
        """Map boxes ``(N, 2D [+ extra])`` given as ``[min_0, ..., min_D-1, max_0, ..., max_D-1, ...]``."""
        return self._map_boxes(boxes, self.to_grid)

    def boxes_to_original(self, boxes: np.ndarray | Sequence) -> np.ndarray:
        """Inverse of :meth:`boxes_to_grid`."""
        return self._map_boxes(boxes, self.to_original)

    def _map_boxes(self, boxes: np.ndarray | Sequence, mapping) -> np.ndarray:
        boxes = np.array(boxes, dtype=np.float64).reshape(-1, np.shape(boxes)[-1] if len(boxes) else 2 * self.ndim)
        d = self.ndim
        boxes[:, :d] = mapping(boxes[:, :d])
        boxes[:, d : 2 * d] = mapping(boxes[:, d : 2 * d])
        return boxes

    @property
    def ndim(self) -> int:
        return len(self.original_size)

    def to_tensor(self) -> torch.Tensor:
        """Pack as a ``(4, D)`` int64 tensor so the geometry collates with the batch."""
        return torch.tensor([self.original_size, self.resized_size, self.pad_before, self.grid_size], dtype=torch.int64)

    @classmethod
    def from_tensor(cls, packed: torch.Tensor | np.ndarray) -> LetterboxGeometry:
        """Inverse of :meth:`to_tensor` for one item, ``(4, D)``."""
        rows = [tuple(int(v) for v in row) for row in np.asarray(packed).reshape(4, -1)]
        return cls(*rows)

    def grid_to_original_image(self, image: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        """Resample a grid-aligned map ``(C, *M)`` to the original pixels, ``(C, *original_size)``.

        ``M`` is ``grid_size`` or the grid at an output stride (``grid_size / 4`` for a map predicted at stride 4);
        the map covers the whole grid, padding included. Each original pixel ``i`` takes the map's value at the
        grid position of its centre, :meth:`to_grid` of ``i + 0.5`` (``mode`` ``"bilinear"`` or ``"nearest"``
        between map-pixel centres, the border value beyond them), so cropping the padding and resizing are one
        exact step for any aspect ratio: a letterboxed side narrower than one map pixel still fills its original
        extent, and a location maps where :meth:`to_original` puts it.
        """
        if image.ndim != self.ndim + 1:
            raise ValueError(
                f"image must have shape (C, *spatial) with {self.ndim} spatial axes, got {tuple(image.shape)}."
            )
        # per axis, the grid position of each original pixel centre in grid_sample's normalised coordinates
        # (-1 and 1 are the outer edges of the map, which spans the whole grid)
        normalised = [
            (2.0 * ((torch.arange(size, dtype=torch.float64) + 0.5) * scale + pad) / grid - 1.0).float()
            for size, scale, pad, grid in zip(self.original_size, self.scale, self.pad_before, self.grid_size)
        ]
        # grid_sample takes the last spatial axis's coordinate first
        sample_grid = torch.stack(torch.meshgrid(*normalised, indexing="ij")[::-1], dim=-1)
        resampled = F.grid_sample(
            image[None].float(),
            sample_grid[None].to(image.device),
            mode=mode,
            padding_mode="border",
            align_corners=False,
        )
        return resampled[0]


class Letterboxd(MapTransform):
    """Letterbox images to ``spatial_size`` and map their coordinate annotations the same way.

    For each key in ``keys`` the image ``(C, *S)`` is resized with its aspect ratio kept
    (``Resize(size_mode="longest")``) and padded with ``pad_value`` to ``spatial_size``. Arrays under
    ``box_keys`` (``(N, 2D + k)``, the first 2D columns are corners) and ``point_keys`` (``(N, D + k)``,
    the first D columns are coordinates) are mapped into the grid. The geometry is stored under
    ``geometry_key`` as a ``(4, D)`` tensor (see :meth:`LetterboxGeometry.to_tensor`).

    Example::

        Letterboxd(keys="image", spatial_size=(224, 224), box_keys="boxes", point_keys="points")
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int] | int,
        box_keys: KeysCollection = (),
        point_keys: KeysCollection = (),
        geometry_key: str = "geometry",
        mode: str = "area",
        pad_value: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_size = spatial_size
        self.box_keys = [box_keys] if isinstance(box_keys, str) else list(box_keys)
        self.point_keys = [point_keys] if isinstance(point_keys, str) else list(point_keys)
        self.geometry_key = geometry_key
        self.mode = mode
        self.pad_value = pad_value

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        geometry = None
        for key in self.key_iterator(d):
            image = d[key]
            spatial = tuple(int(s) for s in image.shape[1:])
            grid = (
                (self.spatial_size,) * len(spatial) if isinstance(self.spatial_size, int) else tuple(self.spatial_size)
            )
            key_geometry = LetterboxGeometry.fit(spatial, grid)
            if geometry is not None and key_geometry != geometry:
                raise ValueError(f"Letterboxd: key '{key}' has spatial shape {spatial}, unlike the other keys.")
            geometry = key_geometry
            resized = Resize(spatial_size=geometry.resized_size, mode=self.mode)(image)
            d[key] = SpatialPad(spatial_size=grid, method="symmetric", value=self.pad_value)(resized)
        if geometry is None:
            return d
        d[self.geometry_key] = geometry.to_tensor()
        for key in self.box_keys:
            if key in d and d[key] is not None:
                d[key] = geometry.boxes_to_grid(d[key]) if len(d[key]) else np.zeros((0, 2 * geometry.ndim + 1))
        for key in self.point_keys:
            if key in d and d[key] is not None and len(d[key]):
                points = np.array(d[key], dtype=np.float64)
                points[:, : geometry.ndim] = geometry.to_grid(points[:, : geometry.ndim])
                d[key] = points
        return d
