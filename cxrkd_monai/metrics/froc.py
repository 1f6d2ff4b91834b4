"""Detections from probability maps, and the FROC of those detections against boxes and points.

Localisation is scored the way the fracture papers do it: the detections of a map are its local maxima
(max-pooling non-maximum suppression) above a low threshold; a detection is a true positive if it falls
inside a ground-truth box, or within ``point_radius`` of a ground-truth point, of its fracture type; each
lesion counts once. The curve and the score come from :mod:`monai.metrics.froc`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics.froc import compute_froc_score

__all__ = ["FROCMetric", "froc_curve_data", "froc_curve_rows"]


def froc_curve_data(
    fp_probs: np.ndarray, tp_probs: np.ndarray, num_targets: int, num_images: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`monai.metrics.froc.compute_froc_curve_data`, by sorting instead of one pass per threshold.

    MONAI counts the scores at or above each distinct score with one array pass per score, quadratic in the number
    of detections: seconds for one evaluation of a few thousand images, and a bootstrap recomputes it for every
    resample. Counting with ``searchsorted`` in the sorted scores gives the same arrays in ``O(n log n)``.

    Args:
        fp_probs: ``(F,)`` scores of the false-positive detections.
        tp_probs: ``(T,)`` lesion scores (the finding detection's score, 0 for a missed lesion).
        num_targets: lesions; num_images: images.

    Returns:
        ``fps_per_image`` and ``sensitivity``, one entry per distinct score but the lowest, then ``0``, as MONAI's.
    """
    fp_sorted, tp_sorted = np.sort(np.asarray(fp_probs)), np.sort(np.asarray(tp_probs))
    thresholds = np.unique(np.concatenate([fp_sorted, tp_sorted]))[1:]
    total_fps = len(fp_sorted) - np.searchsorted(fp_sorted, thresholds, side="left")
    total_tps = len(tp_sorted) - np.searchsorted(tp_sorted, thresholds, side="left")
    fps_per_image = np.append(total_fps, 0) / float(num_images)
    sensitivity = np.append(total_tps, 0) / float(num_targets)
    return fps_per_image, sensitivity


class FROCMetric:
    """Free-response ROC of point detections against lesion boxes and points, per fracture type.

    Feed one image at a time with :meth:`update`, in original pixels:

        - ``detections``: per class a ``(N, D + 1)`` array ``[coords..., score]`` with positive scores;
        - ``boxes``: ``(M, 2D + 1)`` ``[x1, y1, x2, y2, class_index]``;
        - ``points``: ``(M, D + 1)`` ``[x, y, class_index]``.

    Lesions of one class in one image are its boxes, or, where the image has no box of that class, its
    points (validation items carry both for the same fractures, and the boxes are the finer truth). A
    detection hits a box when it lies inside it (borders included) and a point when it lies within
    ``point_radius``. Detections taken from a map sit at map-pixel centres, up to half a map pixel's
    diagonal away from the lesion they mark; on a large radiograph that is more than ``point_radius`` and
    more than a small box's half-size. ``update(..., min_hit_radius=...)`` therefore also counts a
    detection within ``min_hit_radius`` of a lesion's centre (point or box centre) as a hit, so a perfectly
    placed detection is never a miss (:class:`~cxrkd_monai.handlers.FROCScore` passes
    the half-diagonal of each image's map pixel). Detections are matched in order of decreasing score: a
    detection hitting a lesion not yet found is that lesion's true positive (the nearest such lesion when it
    hits several), one that only hits lesions already found is ignored, and one that hits no lesion is a
    false positive.

    :meth:`compute` returns, per class name:

        - ``fps_per_image`` and ``sensitivity``: the FROC curve from
          :func:`monai.metrics.froc.compute_froc_curve_data`, one point per detection score;
        - ``sensitivity_at``: ``{fp rate: sensitivity}`` interpolated at ``fp_per_image``;
        - ``score``: their mean, :func:`monai.metrics.froc.compute_froc_score`;
        - ``num_lesions`` and ``num_images``.

    With no lesion of a class the sensitivities and the score are NaN.

    Args:
        num_classes: fracture types.
        class_names: names of the types, the keys of the result; ``"0"``, ``"1"``, ... by default.
        fp_per_image: false-positive rates at which the score averages the sensitivity (a design choice,
            stated in the bundle metadata).
        point_radius: hit radius around a ground-truth point, in original pixels.
        spatial_dims: ``D``, the coordinates of a detection.

    Example::

        >>> metric = FROCMetric(num_classes=2, class_names=["rib_fracture", "clavicle_fracture"])
        >>> for detections, boxes, points in images:
        ...     metric.update(detections, boxes, points)
        >>> metric.compute()["rib_fracture"]["score"]
    """

    def __init__(
        self,
        num_classes: int = 2,
        class_names: Sequence[str] | None = None,
        fp_per_image: Sequence[float] = (0.125, 0.25, 0.5, 1, 2, 4, 8),
        point_radius: float = 10.0,
        spatial_dims: int = 2,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got num_classes={num_classes}.")
        class_names = [str(k) for k in range(num_classes)] if class_names is None else list(class_names)
        if len(class_names) != num_classes:
            raise ValueError(f"class_names {class_names} must have num_classes={num_classes} entries.")
        if len(fp_per_image) == 0 or any(rate <= 0 for rate in fp_per_image):
            raise ValueError(f"fp_per_image must be positive rates, got fp_per_image={tuple(fp_per_image)}.")
        if point_radius <= 0:
            raise ValueError(f"point_radius must be positive, got point_radius={point_radius}.")
        self.num_classes = num_classes
        self.class_names = class_names
        self.fp_per_image = tuple(fp_per_image)
        self.point_radius = point_radius
        self.spatial_dims = spatial_dims
        self.reset()

    def reset(self) -> None:
        self._fp_probs: list[list[float]] = [[] for _ in range(self.num_classes)]
        self._tp_probs: list[list[float]] = [[] for _ in range(self.num_classes)]
        self._num_images = 0

    def update(
        self,
        detections: Sequence[np.ndarray | torch.Tensor],
        boxes: np.ndarray | torch.Tensor | None = None,
        points: np.ndarray | torch.Tensor | None = None,
        min_hit_radius: float = 0.0,
    ) -> None:
        """Match the detections of one image against its lesions (all in original pixels) and accumulate them.

        ``min_hit_radius``: detections this close to a lesion's centre hit it whatever ``point_radius`` and
        the box size, e.g. half the diagonal of one map pixel in this image's original pixels.
        """
        self.add_matches(self.match(detections, boxes, points, min_hit_radius))

    def add_matches(self, matches: Sequence[tuple[list[float], list[float]]]) -> None:
        """Accumulate one image's :meth:`match` result: a bootstrap matches each image once and adds it per resample."""
        for channel, (lesion_scores, false_positive_scores) in enumerate(matches):
            self._tp_probs[channel].extend(lesion_scores)
            self._fp_probs[channel].extend(false_positive_scores)
        self._num_images += 1

    def match(
        self,
        detections: Sequence[np.ndarray | torch.Tensor],
        boxes: np.ndarray | torch.Tensor | None = None,
        points: np.ndarray | torch.Tensor | None = None,
        min_hit_radius: float = 0.0,
    ) -> list[tuple[list[float], list[float]]]:
        """Per class, one image's lesion scores (the score of the detection that found each lesion, 0 for a missed
        one) and false-positive scores, as :meth:`update` counts them; nothing is accumulated."""
        if len(detections) != self.num_classes:
            raise ValueError(f"detections must hold one array per class ({self.num_classes}), got {len(detections)}.")
        if min_hit_radius < 0:
            raise ValueError(f"min_hit_radius must be >= 0, got min_hit_radius={min_hit_radius}.")
        # A lesion on a map-pixel corner lies exactly min_hit_radius from the pixel centre; the relative
        # slack keeps that perfectly placed detection a hit whichever way the coordinate mapping rounds.
        centre_radius = min_hit_radius * (1.0 + 1e-9)
        dims = self.spatial_dims
        boxes = self._as_rows(boxes, 2 * dims + 1, "boxes", class_column=True)
        points = self._as_rows(points, dims + 1, "points", class_column=True)
        matches = []
        for channel, class_detections in enumerate(detections):
            found = self._as_rows(class_detections, dims + 1, f"detections[{channel}]", class_column=False)
            class_boxes = boxes[boxes[:, -1] == channel, :-1]
            if len(class_boxes):
                centres = (class_boxes[:, :dims] + class_boxes[:, dims:]) / 2
                inside = (found[:, None, :dims] >= class_boxes[None, :, :dims]) & (
                    found[:, None, :dims] <= class_boxes[None, :, dims:]
                )
                distances = np.linalg.norm(found[:, None, :dims] - centres[None], axis=-1)
                hits = inside.all(axis=-1) | (distances <= centre_radius)
            else:
                centres = points[points[:, -1] == channel, :-1]
                distances = np.linalg.norm(found[:, None, :dims] - centres[None], axis=-1)
                hits = distances <= max(self.point_radius, centre_radius)
            matches.append(self._match(found, hits, centres))
        return matches

    @staticmethod
    def _match(found: np.ndarray, hits: np.ndarray, centres: np.ndarray) -> tuple[list[float], list[float]]:
        dims = centres.shape[-1]
        lesion_scores = np.zeros(len(centres))
        lesion_found = np.zeros(len(centres), dtype=bool)
        false_positive_scores = []
        for index in np.argsort(-found[:, -1], kind="stable"):
            coords, score = found[index, :dims], found[index, -1]
            candidates = np.flatnonzero(hits[index] & ~lesion_found)
            if len(candidates):
                nearest = candidates[np.argmin(np.linalg.norm(centres[candidates] - coords, axis=-1))]
                lesion_found[nearest] = True
                lesion_scores[nearest] = score
            elif not hits[index].any():
                false_positive_scores.append(float(score))
        return lesion_scores.tolist(), false_positive_scores

    @property
    def num_images(self) -> int:
        """Images accumulated so far."""
        return self._num_images

    def class_scores(self, class_name: str) -> tuple[np.ndarray, np.ndarray]:
        """One class's accumulated ``(lesion_scores (L,), false_positive_scores (F,))``: per lesion the score of the
        detection that found it (0 when missed), and the scores of the detections that hit no lesion."""
        if class_name not in self.class_names:
            raise KeyError(f"class {class_name!r} is not one of {self.class_names}.")
        channel = self.class_names.index(class_name)
        lesion_scores, false_positive_scores = self._tp_probs[channel], self._fp_probs[channel]
        return np.asarray(lesion_scores, dtype=np.float64), np.asarray(false_positive_scores, dtype=np.float64)

    def compute(self) -> dict[str, dict[str, Any]]:
        """The FROC curve, the interpolated sensitivities and the score of each class."""
        results = {}
        for channel, name in enumerate(self.class_names):
            tp_probs = np.asarray(self._tp_probs[channel], dtype=np.float64)
            num_lesions = len(tp_probs)
            if num_lesions == 0 or self._num_images == 0:
                fps_per_image, sensitivity = np.zeros(0), np.zeros(0)
                sensitivity_at = dict.fromkeys(self.fp_per_image, float("nan"))
                score = float("nan")
            else:
                # MONAI's curve skips the lowest score (in CAMELYON the 0 of a missed lesion); a zero
                # false-positive score below every real one makes every detection score an operating point.
                fp_probs = np.asarray([*self._fp_probs[channel], 0.0], dtype=np.float64)
                fps_per_image, sensitivity = froc_curve_data(
                    fp_probs, tp_probs, num_targets=num_lesions, num_images=self._num_images
                )
                interpolated = np.interp(self.fp_per_image, fps_per_image[::-1], sensitivity[::-1])
                sensitivity_at = {rate: float(sens) for rate, sens in zip(self.fp_per_image, interpolated)}
                score = float(compute_froc_score(fps_per_image, sensitivity, eval_thresholds=self.fp_per_image))
            results[name] = {
                "fps_per_image": fps_per_image,
                "sensitivity": sensitivity,
                "sensitivity_at": sensitivity_at,
                "score": score,
                "num_lesions": num_lesions,
                "num_images": self._num_images,
            }
        return results

    def _as_rows(
        self, values: np.ndarray | torch.Tensor | None, width: int, key: str, class_column: bool
    ) -> np.ndarray:
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        rows = np.zeros((0, width)) if values is None else np.asarray(values, dtype=np.float64)
        rows = rows.reshape(0, width) if rows.size == 0 else rows
        if rows.ndim != 2 or rows.shape[1] != width:
            raise ValueError(f"'{key}' must have shape (N, {width}), got shape {rows.shape}.")
        if not class_column:
            return rows
        bad = rows[(rows[:, -1] < 0) | (rows[:, -1] >= self.num_classes) | (rows[:, -1] % 1 != 0), -1]
        if len(bad):
            raise ValueError(f"'{key}' has class index {bad[0]}, outside [0, {self.num_classes}).")
        return rows


def froc_curve_rows(result: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten :meth:`FROCMetric.compute` output into CSV rows, one per curve point and class.

    Each row holds ``class``, ``fps_per_image`` and ``sensitivity``, ready for ``csv.DictWriter``.
    """
    return [
        {"class": name, "fps_per_image": float(fps), "sensitivity": float(sens)}
        for name, curve in result.items()
        for fps, sens in zip(curve["fps_per_image"], curve["sensitivity"])
    ]
