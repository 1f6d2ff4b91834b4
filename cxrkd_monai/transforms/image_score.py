"""The image-level score of a fracture type: the maximum of its probability map over the image, not the padding.

A letterboxed map also covers the padding around the radiograph, where no fracture can be. Detections there
are dropped (:func:`~cxrkd_monai.transforms.detect_in_original_pixels`), and the image-level score follows the
same rule: a map pixel counts when its centre, ``(m + 0.5) * output_stride`` in grid pixels, lies within the
resized image ``[pad_before, pad_before + resized_size]`` along every axis, which is where a peak at that pixel
maps into the original image.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from cxrkd_monai.transforms.detection import output_stride_of
from cxrkd_monai.transforms.geometry import LetterboxGeometry

__all__ = ["ImageScored", "image_area_mask", "image_scores"]


def image_area_mask(geometry: torch.Tensor | LetterboxGeometry, map_shape: tuple[int, ...]) -> torch.Tensor:
    """Bool ``map_shape`` mask of the map pixels whose centre lies on the image rather than the padding.

    Along an axis where no pixel centre falls on the image (an image thinner than one map pixel), the pixel that
    holds the image's middle counts, so that every image has a score.

    Args:
        geometry: the item's letterbox geometry (``(4, D)`` tensor from :class:`Letterboxd`, or the object).
        map_shape: spatial shape ``S'`` of the map, which tiles the grid with one integer output stride.

    Example::

        >>> geometry = LetterboxGeometry.fit((32, 64), (64, 64))  # 32 x 64 image padded 16 px left and right
        >>> image_area_mask(geometry, (4, 4))[:, 0]  # stride 16: pixel centres at 8, 24, 40, 56
        tensor([False,  True,  True, False])
    """
    if not isinstance(geometry, LetterboxGeometry):
        geometry = LetterboxGeometry.from_tensor(torch.as_tensor(geometry).cpu())
    stride = output_stride_of(geometry, tuple(map_shape))
    mask = torch.ones(map_shape, dtype=torch.bool)
    for axis, (size, pad, resized) in enumerate(zip(map_shape, geometry.pad_before, geometry.resized_size)):
        centres = (torch.arange(size, dtype=torch.float64) + 0.5) * stride
        inside = (centres >= pad) & (centres <= pad + resized)
        if not bool(inside.any()):
            inside[min(int((pad + resized / 2) // stride), size - 1)] = True
        mask &= inside.view(*[size if a == axis else 1 for a in range(len(map_shape))])
    return mask


def image_scores(prob_maps: torch.Tensor, geometry: torch.Tensor | LetterboxGeometry) -> torch.Tensor:
    """Each type's image-level score, the maximum of its map over the image area (:func:`image_area_mask`).

    Args:
        prob_maps: one item's maps ``(K, *S')`` with its geometry ``(4, D)``, or a batch ``(B, K, *S')`` with
            ``(B, 4, D)``; probabilities or logits (the maximum commutes with the sigmoid).
        geometry: the letterbox geometry of the item or of each item of the batch.

    Returns:
        ``(K,)`` for one item or ``(B, K)`` for a batch, in the maps' dtype and device.
    """
    packed = geometry.to_tensor() if isinstance(geometry, LetterboxGeometry) else torch.as_tensor(geometry)
    if packed.ndim == 3:
        if len(packed) != len(prob_maps):
            raise ValueError(f"{len(prob_maps)} maps but {len(packed)} geometries in the batch.")
        return torch.stack([image_scores(item_maps, item) for item_maps, item in zip(prob_maps, packed)])
    spatial = tuple(prob_maps.shape[1:])
    mask = image_area_mask(packed, spatial).to(prob_maps.device)
    lowest = torch.finfo(prob_maps.dtype).min
    return torch.where(mask, prob_maps, torch.full((), lowest, dtype=prob_maps.dtype, device=prob_maps.device)).amax(
        dim=tuple(range(1, prob_maps.ndim))
    )


class ImageScored(MapTransform):
    """Write :func:`image_scores` of the maps under ``keys`` to ``output_key`` (``"<key>_score"`` by default).

    It runs on one item (``(K, *S')`` maps) or, in an evaluator with ``decollate=False``, on the whole batch
    (``(B, K, *S')``): MONAI applies the postprocessing to the batch merged with the output, so the letterbox
    geometry under ``geometry_key`` is at hand.

    Args:
        keys: keys of the probability maps.
        geometry_key: key of the letterbox geometry ``(4, D)`` or ``(B, 4, D)``.
        output_key: key of the scores for a single ``keys``; ``None`` writes ``f"{key}_score"``.
        allow_missing_keys: do not raise on a missing key.

    Example (bundle JSON)::

        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "sigmoid": true},
            {"_target_": "cxrkd_monai.transforms.ImageScored", "keys": "pred", "output_key": "image_score"}]}
    """

    def __init__(
        self,
        keys: KeysCollection,
        geometry_key: str = "geometry",
        output_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if output_key is not None and len(self.keys) != 1:
            raise ValueError(f"output_key names one output, but keys has {len(self.keys)} entries: {self.keys}.")
        self.geometry_key = geometry_key
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.geometry_key not in d:
            raise KeyError(
                f"ImageScored: no '{self.geometry_key}' among the keys {sorted(map(str, d))}; apply Letterboxd."
            )
        for key in self.key_iterator(d):
            scores = image_scores(torch.as_tensor(d[key]), d[self.geometry_key])
            d[self.output_key if self.output_key is not None else f"{key}_score"] = scores
        return d
