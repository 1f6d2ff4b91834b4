"""Validate the fracture annotations of a datalist item and turn them into arrays and tensors."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform

from cxrkd_monai.errors import InvalidItemError
from cxrkd_monai.utils.fracture_subsets import FRACTURE_SUBSETS, REGION_ANNOTATED

__all__ = ["EncodeFractureAnnotationsd"]

#: The data sets of the AALS method, in the order of their ``subset_index``: region-annotated,
#: record-positive without regions, record-negative.


class EncodeFractureAnnotationsd(MapTransform):
    """Check one fracture item against its loaded image and encode its annotations numerically.

    Runs after the image is loaded (``(C, W, H)``, original pixels) and before ``Letterboxd``. From a
    datalist item such as::

        {"image": "images/p0001_s01.png", "image_label": [1, 0], "subset": "D_R",
         "boxes": [[x1, y1, x2, y2, "rib_fracture"]], "points": [[x, y, "rib_fracture"]]}

    it produces

        - ``boxes``: float64 ``(N, 5)``, ``[x1, y1, x2, y2, class_index]`` (``(0, 5)`` when absent);
        - ``points``: float64 ``(N, 3)``, ``[x, y, class_index]`` (``(0, 3)`` when absent);
        - ``image_label``: float32 tensor ``(K,)``;
        - ``subset_index``: int64 scalar tensor, the position of ``subset`` in ``("D_R", "D_P", "D_N")``;
          ``subset`` itself is kept.

    Items without ``image_label`` or ``subset`` (e.g. inference items) pass through without those
    outputs. Every error is an :class:`~cxrkd_monai.errors.InvalidItemError` naming the image file and the
    offending key: an unknown class name, a coordinate that is not a finite number (NaN, inf, text), a box
    or point outside the image, a box with ``x2 <= x1`` or ``y2 <= y1``, a ``D_R`` item without boxes or
    points, an ``image_label`` of the wrong length or with a value other than 0 or 1, or an unknown subset.

    Args:
        class_names: fracture types, in the order of ``image_label`` and of the output maps.
        image_key: key of the loaded image, which gives the spatial size and the file name.
        box_key: key of the boxes.
        point_key: key of the points.
        subset_key: key of the subset name.
        label_key: key of the image-level labels.

    Example::

        >>> encode = EncodeFractureAnnotationsd(class_names=["rib_fracture", "clavicle_fracture"])
        >>> item = encode({"image": torch.zeros(1, 64, 48), "subset": "D_R", "image_label": [1, 0],
        ...                "boxes": [[10, 12, 20, 30, "rib_fracture"]]})
        >>> item["boxes"], item["subset_index"]
        (array([[10., 12., 20., 30.,  0.]]), tensor(0))
    """

    def __init__(
        self,
        class_names: Sequence[str],
        image_key: str = "image",
        box_key: str = "boxes",
        point_key: str = "points",
        subset_key: str = "subset",
        label_key: str = "image_label",
    ) -> None:
        super().__init__(keys=[box_key, point_key], allow_missing_keys=True)
        if len(class_names) == 0 or len(set(class_names)) != len(class_names):
            raise ValueError(f"class_names must be non-empty and unique, got class_names={list(class_names)}.")
        self.class_names = list(class_names)
        self.image_key = image_key
        self.box_key = box_key
        self.point_key = point_key
        self.subset_key = subset_key
        self.label_key = label_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        source = self._source_name(d)
        size = np.asarray(image.shape[1:], dtype=np.float64)
        d[self.box_key] = self._encode_boxes(d.get(self.box_key), size, source)
        d[self.point_key] = self._encode_points(d.get(self.point_key), size, source)
        if self.label_key in d:
            d[self.label_key] = torch.as_tensor(self._encode_label(d[self.label_key], source))
        if self.subset_key in d:
            subset = d[self.subset_key]
            if not isinstance(subset, str) or subset not in FRACTURE_SUBSETS:
                raise InvalidItemError(
                    f"{source}: '{self.subset_key}' must be one of {FRACTURE_SUBSETS}, got {subset!r}."
                )
            if subset == REGION_ANNOTATED and len(d[self.box_key]) + len(d[self.point_key]) == 0:
                raise InvalidItemError(
                    f"{source}: a 'D_R' item needs at least one entry under '{self.box_key}' or "
                    f"'{self.point_key}', got none."
                )
            d[f"{self.subset_key}_index"] = torch.tensor(FRACTURE_SUBSETS.index(subset), dtype=torch.int64)
        return d

    def _source_name(self, d: Mapping[Hashable, Any]) -> str:
        image = d[self.image_key]
        meta = getattr(image, "meta", None) or d.get(f"{self.image_key}_meta_dict") or {}
        name = meta.get("filename_or_obj")
        return f"image '{name}'" if name else f"item with '{self.image_key}' of shape {tuple(image.shape)}"

    def _encode_label(self, value: Any, source: str) -> np.ndarray:
        """``image_label`` as float32 ``(K,)``, each entry exactly 0 or 1 (a NaN or a 2 is not a label)."""
        label = _numbers(value, f"{source}: '{self.label_key}'").reshape(-1)
        if label.size != len(self.class_names):
            raise InvalidItemError(
                f"{source}: '{self.label_key}' has {label.size} entries, expected one per class {self.class_names}."
            )
        if not np.all((label == 0.0) | (label == 1.0)):
            raise InvalidItemError(
                f"{source}: '{self.label_key}' must hold 0 or 1 per class {self.class_names}, got {label.tolist()}."
            )
        return label.astype(np.float32)

    def _class_index(self, name: Any, key: str, source: str) -> int:
        if not isinstance(name, str) or name not in self.class_names:
            raise InvalidItemError(
                f"{source}: '{key}' has unknown class {name!r}; valid classes are {self.class_names}."
            )
        return self.class_names.index(name)

    def _encode_boxes(self, boxes: Any, size: np.ndarray, source: str) -> np.ndarray:
        dims = len(size)
        encoded = np.zeros((0, 2 * dims + 1), dtype=np.float64)
        for box in _entries(boxes, f"{source}: '{self.box_key}'"):
            if len(box) != 2 * dims + 1:
                raise InvalidItemError(
                    f"{source}: '{self.box_key}' entries must be [x1, y1, x2, y2, class], got {list(box)}."
                )
            corners = _finite(box[: 2 * dims], f"{source}: '{self.box_key}' entry {list(box)}")
            low, high = corners[:dims], corners[dims:]
            if np.any(high <= low):
                raise InvalidItemError(f"{source}: '{self.box_key}' entry {list(box)} has x2 <= x1 or y2 <= y1.")
            if np.any(low < 0) or np.any(high > size):
                raise InvalidItemError(
                    f"{source}: '{self.box_key}' entry {list(box)} lies outside the image of size "
                    f"{tuple(int(s) for s in size)}."
                )
            row = np.append(corners, self._class_index(box[-1], self.box_key, source))
            encoded = np.vstack([encoded, row])
        return encoded

    def _encode_points(self, points: Any, size: np.ndarray, source: str) -> np.ndarray:
        dims = len(size)
        encoded = np.zeros((0, dims + 1), dtype=np.float64)
        for point in _entries(points, f"{source}: '{self.point_key}'"):
            if len(point) != dims + 1:
                raise InvalidItemError(
                    f"{source}: '{self.point_key}' entries must be [x, y, class], got {list(point)}."
                )
            coords = _finite(point[:dims], f"{source}: '{self.point_key}' entry {list(point)}")
            if np.any(coords < 0) or np.any(coords > size):
                raise InvalidItemError(
                    f"{source}: '{self.point_key}' entry {list(point)} lies outside the image of size "
                    f"{tuple(int(s) for s in size)}."
                )
            row = np.append(coords, self._class_index(point[-1], self.point_key, source))
            encoded = np.vstack([encoded, row])
        return encoded


def _numbers(value: Any, where: str) -> np.ndarray:
    """``value`` as a float64 array, or :class:`InvalidItemError` naming ``where`` when it holds non-numbers."""
    entries = value if isinstance(value, (list, tuple)) else [value]
    if any(entry is None or isinstance(entry, (str, bytes)) for entry in entries):
        raise InvalidItemError(f"{where} must hold numbers, got {value!r}.")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidItemError(f"{where} must hold numbers, got {value!r} ({error}).") from None


def _finite(value: Any, where: str) -> np.ndarray:
    """Coordinates as float64 ``(N,)``; NaN, infinity or anything not a number raises naming ``where``."""
    coords = _numbers(value, where).reshape(-1)
    if not np.isfinite(coords).all():
        raise InvalidItemError(f"{where} has a coordinate that is not a finite number.")
    return coords


def _entries(value: Any, where: str) -> list[Sequence[Any]]:
    """The list of box or point entries under a key (``None`` is none); each entry must be a list."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(entry, (list, tuple)) for entry in value):
        raise InvalidItemError(f"{where} must be a list of [coordinates..., class] lists, got {value!r}.")
    return list(value)
