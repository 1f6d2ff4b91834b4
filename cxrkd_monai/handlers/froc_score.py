"""Ignite metric handler: FROC score of letterboxed probability maps against boxes and points in original pixels."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch.distributed as dist
from ignite.engine import Engine
from ignite.metrics import Metric

from cxrkd_monai.metrics.froc import FROCMetric
from cxrkd_monai.transforms.detection import (
    annotations_to_original,
    detect_in_original_pixels,
    map_pixel_half_diagonal,
)

__all__ = ["FROCScore"]

logger = logging.getLogger(__name__)


def _mean_of_defined(scores: Iterable[float]) -> float:
    """The mean of the types' scores that are defined (not NaN), NaN when none is."""
    defined = [s for s in scores if not math.isnan(s)]
    return float(np.mean(defined)) if defined else math.nan


class FROCScore(Metric):
    """FROC score of probability maps against boxes and points, as an Ignite metric for evaluators.

    Each iteration, every item's ``(K, *S')`` probability map is reduced to peaks
    (:func:`~cxrkd_monai.transforms.find_peaks`) that are mapped back to original pixels with the item's
    letterbox ``geometry``; its letterboxed ``boxes``/``points`` are mapped back the same way. At the end
    :class:`~cxrkd_monai.metrics.FROCMetric` scores them: a peak is a hit inside a box, or within
    ``point_radius`` original pixels of a point, of its type, and also within half a map pixel's diagonal
    (in that image's original pixels) of the lesion's centre, since a peak can only sit at a map-pixel
    centre; sensitivity is read at ``fp_per_image``.

    The metric value is the mean FROC score over the fracture types that have lesions in the data (a type
    without lesions has no sensitivity and is left out with a warning; with none at all the value is
    ``nan``). Per-type scores go to ``engine.state.metrics[f"{name}_{class_name}"]`` and the full result,
    with the curves, stays in :attr:`result` for :class:`FROCCurveWriter`, and the matched detections of every
    image in :attr:`froc_metric` (a :class:`~cxrkd_monai.metrics.FROCMetric`) for the lesion-level operating points
    (:class:`~cxrkd_monai.handlers.CalibrationFitter`). Under DDP every rank's items are gathered before scoring.

    Boxes, points and geometry are read from ``engine.state.batch`` (ragged lists from
    :func:`~cxrkd_monai.data.collate_with_annotations`), so the evaluator must run with
    ``decollate=False``.

    Args:
        class_names: the K fracture types, in map-channel order.
        fp_per_image: false positives per image at which sensitivity is read.
        point_radius: hit radius around ground-truth points, original pixels.
        peak_threshold: lowest probability of a detection.
        nms_kernel_size: max-pooling window of the peak finder (map pixels).
        max_peaks: most detections per image and type.
        output_transform: picks the ``(B, K, *S')`` probability maps from ``engine.state.output``.
        box_key, point_key, geometry_key: batch keys of the annotations and the letterbox geometry.

    Example (bundle JSON)::

        "key_val_metric": {"val_froc": {"_target_": "cxrkd_monai.handlers.FROCScore",
                                        "class_names": "@class_names"}}
    """

    def __init__(
        self,
        class_names: Sequence[str],
        fp_per_image: Sequence[float] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
        point_radius: float = 10.0,
        peak_threshold: float = 0.05,
        nms_kernel_size: int = 3,
        max_peaks: int = 20,
        output_transform: Callable = lambda output: output["pred"],
        box_key: str = "boxes",
        point_key: str = "points",
        geometry_key: str = "geometry",
    ) -> None:
        self.class_names = list(class_names)
        self.fp_per_image = tuple(float(f) for f in fp_per_image)
        self.point_radius = point_radius
        self.peak_threshold = peak_threshold
        self.nms_kernel_size = nms_kernel_size
        self.max_peaks = max_peaks
        self.box_key = box_key
        self.point_key = point_key
        self.geometry_key = geometry_key
        self.result: dict[str, Any] = {}
        self.froc_metric: FROCMetric | None = None
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self._items: list[tuple[list[np.ndarray], np.ndarray, np.ndarray, float]] = []

    def iteration_completed(self, engine: Engine) -> None:
        batch = engine.state.batch
        if self.geometry_key not in batch:
            raise KeyError(f"FROCScore: batch has no '{self.geometry_key}'; apply Letterboxd before evaluation.")
        prob_maps = self._output_transform(engine.state.output)
        num_items = len(prob_maps)
        self.update(
            (
                prob_maps,
                batch.get(self.box_key, [None] * num_items),
                batch.get(self.point_key, [None] * num_items),
                batch[self.geometry_key],
            )
        )

    def update(self, output: Sequence[Any]) -> None:
        """``output``: ``(prob_maps (B, K, *S'), boxes [B × (M, 2D+1)], points [B × (M, D+1)], geometry (B, 4, D))``."""
        prob_maps, boxes, points, geometry = output
        if prob_maps.shape[1] != len(self.class_names):
            raise ValueError(
                f"FROCScore: maps have {prob_maps.shape[1]} channels, class_names has {len(self.class_names)}."
            )
        for prob_map, item_boxes, item_points, item_geometry in zip(prob_maps, boxes, points, geometry):
            detections = detect_in_original_pixels(
                prob_map, item_geometry, self.peak_threshold, self.nms_kernel_size, self.max_peaks
            )
            boxes_original, points_original = annotations_to_original(item_boxes, item_points, item_geometry)
            min_hit_radius = map_pixel_half_diagonal(item_geometry, tuple(prob_map.shape[1:]))
            self._items.append((detections, boxes_original, points_original, min_hit_radius))

    def compute(self) -> float:
        items = self._items
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, items)
            items = [item for rank_items in gathered for item in rank_items]
        froc = self._froc_metric()
        for detections, boxes, points, min_hit_radius in items:
            froc.update(detections, boxes, points, min_hit_radius=min_hit_radius)
        self.result, self.froc_metric = froc.compute(), froc
        scores = {name: float(self.result[name]["score"]) for name in self.class_names}
        undefined = [name for name, s in scores.items() if math.isnan(s)]
        if undefined:
            logger.warning("FROC undefined (no lesions) for %s; left out of the mean FROC score.", undefined)
        return _mean_of_defined(scores.values())

    def bootstrap_statistic(self, name: str) -> tuple[int, Callable[[np.ndarray], dict[str, float]]]:
        """The number of images accumulated and a function of image indices giving the FROC scores on them.

        The function takes an int array of indices (``(n,)``, repeats allowed) and returns the values
        :meth:`completed` reports, ``{name: mean score, f"{name}_{class_name}": score}``. Each image's detections
        are matched to its lesions once, here; a call only adds up the matches of its images. The images are this
        process's only.
        """
        matcher = self._froc_metric()
        matches = [matcher.match(d, b, p, min_hit_radius=r) for d, b, p, r in self._items]

        def statistic(index: np.ndarray) -> dict[str, float]:
            froc = self._froc_metric()
            for i in index:
                froc.add_matches(matches[i])
            result = froc.compute()
            scores = {f"{name}_{c}": float(result[c]["score"]) for c in self.class_names}
            return {name: _mean_of_defined(scores.values()), **scores}

        return len(matches), statistic

    def _froc_metric(self) -> FROCMetric:
        return FROCMetric(
            num_classes=len(self.class_names),
            class_names=self.class_names,
            fp_per_image=self.fp_per_image,
            point_radius=self.point_radius,
        )

    def completed(self, engine: Engine, name: str) -> None:
        engine.state.metrics[name] = self.compute()
        for class_name in self.class_names:
            engine.state.metrics[f"{name}_{class_name}"] = float(self.result[class_name]["score"])
