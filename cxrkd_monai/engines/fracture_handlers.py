"""Ignite metrics and handlers of the fracture bundle: pseudo-positive rate, FROC score, FROC curve file."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce

from cxrkd_monai.engines.distributed import is_rank0
from cxrkd_monai.engines.fracture_detections import (
    annotations_to_original,
    detect_in_original_pixels,
    map_pixel_half_diagonal,
)
from cxrkd_monai.metrics.froc import FROCMetric, froc_curve_rows

__all__ = ["FROCCurveWriter", "FROCScore", "PseudoPositiveRate"]

logger = logging.getLogger(__name__)


class PseudoPositiveRate(Metric):
    """What the stage-2 targets make of the record-positive maps without regions (D_P maps), per epoch.

    A D_P map is an (image, fracture type) pair whose record is positive and which has no region, so the
    teacher labels it (see :class:`~cxrkd_monai.engines.teacher_student.TeacherStudentTrainer`). Three
    figures show whether sharpening acted and whether it ran away:

    - the metric value, the *pseudo-positive rate*: the fraction of D_P maps whose target peak exceeds
      ``threshold``. A teacher that collapses to all-negative pseudo-labels reads near 0;
    - ``raised_fraction_name``: the fraction of D_P pixels whose target is above the teacher's value, i.e.
      that sharpening raised (0 for ``"none"``; for AALS, the pixels above its fixed point);
    - ``positive_area_name``: the fraction of D_P pixels whose target exceeds ``threshold``. Fractures are
      small, so this must stay a small share of the image; creeping towards 1 means the pseudo-labels
      have drifted to "fracture everywhere".

    Each figure is ``nan`` in an epoch without D_P maps.

    Input (after ``output_transform``): ``(dp_target, dp_teacher, dp_mask)``, the ``(N, K, *S)`` target and
    teacher probability maps and the bool ``(N, K)`` mask of D_P maps of a batch (``N`` may be 0), as
    :class:`~cxrkd_monai.engines.teacher_student.TeacherStudentTrainer` stores them.

    Args:
        threshold: a target above this counts as positive (peak for the rate, pixel for the area).
        raised_fraction_name: ``engine.state.metrics`` key of the raised-pixel fraction.
        positive_area_name: ``engine.state.metrics`` key of the positive-area fraction.
        output_transform: picks ``(dp_target, dp_teacher, dp_mask)`` from ``engine.state.output``.
        device: where the counters live (the trainer's device under DDP).

    Example (bundle JSON)::

        "key_train_metric": {"pseudo_positive_rate": {
            "_target_": "cxrkd_monai.engines.fracture_handlers.PseudoPositiveRate"}}
    """

    def __init__(
        self,
        threshold: float = 0.5,
        raised_fraction_name: str = "dp_raised_fraction",
        positive_area_name: str = "dp_positive_area",
        output_transform: Callable = lambda output: (output["dp_target"], output["dp_teacher"], output["dp_mask"]),
        device: str | torch.device = "cpu",
    ) -> None:
        self.threshold = threshold
        self.raised_fraction_name = raised_fraction_name
        self.positive_area_name = positive_area_name
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._maps = torch.tensor(0.0, device=self._device)
        self._pseudo_positive = torch.tensor(0.0, device=self._device)
        self._pixels = torch.tensor(0.0, device=self._device)
        self._raised = torch.tensor(0.0, device=self._device)
        self._positive_area = torch.tensor(0.0, device=self._device)

    @reinit__is_reduced
    def update(self, output: Sequence[torch.Tensor]) -> None:
        target, teacher, mask = (torch.as_tensor(v).detach() for v in output)
        if target.ndim < 3 or teacher.shape != target.shape or mask.shape != target.shape[:2]:
            raise ValueError(
                f"PseudoPositiveRate expects dp_target (N, K, *S), dp_teacher of the same shape and dp_mask "
                f"(N, K), got {tuple(target.shape)}, {tuple(teacher.shape)} and {tuple(mask.shape)}."
            )
        mask = mask.to(self._device).bool()
        target, teacher = target.to(self._device).flatten(2)[mask], teacher.to(self._device).flatten(2)[mask]
        self._maps += len(target)
        self._pseudo_positive += (target.amax(dim=-1) > self.threshold).sum()
        self._pixels += target.numel()
        self._raised += (target > teacher).sum()
        self._positive_area += (target > self.threshold).sum()

    @sync_all_reduce("_maps", "_pseudo_positive", "_pixels", "_raised", "_positive_area")
    def compute(self) -> dict[str, float]:
        maps, pixels = float(self._maps), float(self._pixels)
        return {
            "rate": float(self._pseudo_positive) / maps if maps else math.nan,
            "raised_fraction": float(self._raised) / pixels if pixels else math.nan,
            "positive_area": float(self._positive_area) / pixels if pixels else math.nan,
        }

    def completed(self, engine: Engine, name: str) -> None:
        result = self.compute()
        engine.state.metrics[name] = result["rate"]
        engine.state.metrics[self.raised_fraction_name] = result["raised_fraction"]
        engine.state.metrics[self.positive_area_name] = result["positive_area"]


class FROCScore(Metric):
    """FROC score of probability maps against boxes and points, as an Ignite metric for evaluators.

    Each iteration, every item's ``(K, *S')`` probability map is reduced to peaks
    (:func:`~cxrkd_monai.metrics.froc.find_peaks`) that are mapped back to original pixels with the item's
    letterbox ``geometry``; its letterboxed ``boxes``/``points`` are mapped back the same way. At the end
    :class:`~cxrkd_monai.metrics.froc.FROCMetric` scores them: a peak is a hit inside a box, or within
    ``point_radius`` original pixels of a point, of its type, and also within half a map pixel's diagonal
    (in that image's original pixels) of the lesion's centre, since a peak can only sit at a map-pixel
    centre; sensitivity is read at ``fp_per_image``.

    The metric value is the mean FROC score over the fracture types that have lesions in the data (a type
    without lesions has no sensitivity and is left out with a warning; with none at all the value is
    ``nan``). Per-type scores go to ``engine.state.metrics[f"{name}_{class_name}"]`` and the full result,
    with the curves, stays in :attr:`result` for :class:`FROCCurveWriter`. Under DDP every rank's items are
    gathered before scoring.

    Boxes, points and geometry are read from ``engine.state.batch`` (ragged lists from
    :func:`~cxrkd_monai.data.collate.collate_with_annotations`), so the evaluator must run with
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

        "key_val_metric": {"val_froc": {"_target_": "cxrkd_monai.engines.fracture_handlers.FROCScore",
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
        froc = FROCMetric(
            num_classes=len(self.class_names),
            class_names=self.class_names,
            fp_per_image=self.fp_per_image,
            point_radius=self.point_radius,
        )
        for detections, boxes, points, min_hit_radius in items:
            froc.update(detections, boxes, points, min_hit_radius=min_hit_radius)
        self.result = froc.compute()
        scores = {name: float(self.result[name]["score"]) for name in self.class_names}
        defined = [s for s in scores.values() if not math.isnan(s)]
        undefined = [name for name, s in scores.items() if math.isnan(s)]
        if undefined:
            logger.warning("FROC undefined (no lesions) for %s; left out of the mean FROC score.", undefined)
        return float(np.mean(defined)) if defined else math.nan

    def completed(self, engine: Engine, name: str) -> None:
        engine.state.metrics[name] = self.compute()
        for class_name in self.class_names:
            engine.state.metrics[f"{name}_{class_name}"] = float(self.result[class_name]["score"])


class FROCCurveWriter:
    """Writes the FROC curves of a :class:`FROCScore` to ``output_dir/filename`` (CSV) at completion, rank 0.

    One row per fracture type and curve point, as :func:`~cxrkd_monai.metrics.froc.froc_curve_rows` gives
    them. Attach it to the evaluator that runs ``froc_metric``.

    Args:
        froc_metric: the evaluator's :class:`FROCScore`.
        output_dir: folder of the CSV (created).
        filename: name of the CSV.
    """

    def __init__(self, froc_metric: FROCScore, output_dir: str, filename: str = "froc_curve.csv") -> None:
        self.froc_metric = froc_metric
        self.output_path = Path(output_dir) / filename

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not is_rank0():
            return
        if not self.froc_metric.result:
            raise RuntimeError("FROCCurveWriter: the FROC metric has not been computed on this engine.")
        rows = froc_curve_rows(self.froc_metric.result)
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.output_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
            writer.writeheader()
            writer.writerows(rows)
        logger.info("Wrote the FROC curve (%d rows) to %s", len(rows), self.output_path)
