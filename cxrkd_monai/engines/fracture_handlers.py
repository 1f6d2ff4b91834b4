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
from cxrkd_monai.engines.fracture_detections import annotations_to_original, detect_in_original_pixels
from cxrkd_monai.metrics.froc import FROCMetric, froc_curve_rows

__all__ = ["FROCCurveWriter", "FROCScore", "PseudoPositiveRate"]

logger = logging.getLogger(__name__)


class PseudoPositiveRate(Metric):
    """How many record-positive D_P findings the stage-2 targets still call positive, per epoch.

    For every D_P (image, fracture type) pair the target map's peak is compared with ``threshold``. The
    metric value is the *pseudo-positive rate*: among pairs whose record label is positive, the fraction
    whose target peak exceeds ``threshold``. Two companions are stored next to it:
    ``record_prevalence`` (fraction of all D_P pairs with a positive record label) and
    ``pseudo_prevalence`` (fraction of all D_P pairs whose target peak exceeds ``threshold``). A teacher
    that collapses to all-negative pseudo-labels shows as a rate near 0 and a pseudo prevalence far below
    the record prevalence.

    Input (after ``output_transform``): ``(dp_target, dp_label)``, the ``(N, K, *S)`` target maps and the
    ``(N, K)`` record labels of a batch's D_P items (``N`` may be 0), as
    :class:`~cxrkd_monai.engines.teacher_student.TeacherStudentTrainer` stores them.

    Args:
        threshold: a target peak above this counts as a pseudo-positive.
        record_prevalence_name: ``engine.state.metrics`` key of the record prevalence.
        pseudo_prevalence_name: ``engine.state.metrics`` key of the pseudo prevalence.
        output_transform: picks ``(dp_target, dp_label)`` from ``engine.state.output``.
        device: where the counters live (the trainer's device under DDP).

    Example (bundle JSON)::

        "additional_metrics": {"pseudo_positive_rate": {
            "_target_": "cxrkd_monai.engines.fracture_handlers.PseudoPositiveRate"}}
    """

    def __init__(
        self,
        threshold: float = 0.5,
        record_prevalence_name: str = "record_prevalence",
        pseudo_prevalence_name: str = "pseudo_prevalence",
        output_transform: Callable = lambda output: (output["dp_target"], output["dp_label"]),
        device: str | torch.device = "cpu",
    ) -> None:
        self.threshold = threshold
        self.record_prevalence_name = record_prevalence_name
        self.pseudo_prevalence_name = pseudo_prevalence_name
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._pairs = torch.tensor(0.0, device=self._device)
        self._record_positive = torch.tensor(0.0, device=self._device)
        self._pseudo_positive = torch.tensor(0.0, device=self._device)
        self._pseudo_positive_of_record_positive = torch.tensor(0.0, device=self._device)

    @reinit__is_reduced
    def update(self, output: Sequence[torch.Tensor]) -> None:
        target, label = (torch.as_tensor(v).detach() for v in output)
        if target.ndim < 3 or label.shape != target.shape[:2]:
            raise ValueError(
                f"PseudoPositiveRate expects dp_target (N, K, *S) and dp_label (N, K), "
                f"got {tuple(target.shape)} and {tuple(label.shape)}."
            )
        pseudo = target.flatten(2).amax(dim=-1).to(self._device) > self.threshold
        positive = label.to(self._device) > 0.5
        self._pairs += label.numel()
        self._record_positive += positive.sum()
        self._pseudo_positive += pseudo.sum()
        self._pseudo_positive_of_record_positive += (pseudo & positive).sum()

    @sync_all_reduce("_pairs", "_record_positive", "_pseudo_positive", "_pseudo_positive_of_record_positive")
    def compute(self) -> dict[str, float]:
        pairs, positive = float(self._pairs), float(self._record_positive)
        return {
            "rate": float(self._pseudo_positive_of_record_positive) / positive if positive else math.nan,
            "record_prevalence": positive / pairs if pairs else math.nan,
            "pseudo_prevalence": float(self._pseudo_positive) / pairs if pairs else math.nan,
        }

    def completed(self, engine: Engine, name: str) -> None:
        result = self.compute()
        engine.state.metrics[name] = result["rate"]
        engine.state.metrics[self.record_prevalence_name] = result["record_prevalence"]
        engine.state.metrics[self.pseudo_prevalence_name] = result["pseudo_prevalence"]


class FROCScore(Metric):
    """FROC score of probability maps against boxes and points, as an Ignite metric for evaluators.

    Each iteration, every item's ``(K, *S')`` probability map is reduced to peaks
    (:func:`~cxrkd_monai.metrics.froc.find_peaks`) that are mapped back to original pixels with the item's
    letterbox ``geometry``; its letterboxed ``boxes``/``points`` are mapped back the same way. At the end
    :class:`~cxrkd_monai.metrics.froc.FROCMetric` scores them: a peak is a hit inside a box, or within
    ``point_radius`` original pixels of a point, of its type; sensitivity is read at ``fp_per_image``.

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
        self._items: list[tuple[list[np.ndarray], np.ndarray, np.ndarray]] = []

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
            self._items.append((detections, *annotations_to_original(item_boxes, item_points, item_geometry)))

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
        for detections, boxes, points in items:
            froc.update(detections, boxes, points)
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
