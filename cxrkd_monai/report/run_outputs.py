"""What an evaluation run left on disk: ``metrics.json``, ``predictions.csv`` and (fracture runs) ``froc_curve.csv``.

Both bundles' ``evaluate.json`` write these files into their ``output_dir`` (the *run folder*):

- VKD: ``predictions.csv`` has ``image``, then ``prob_<class>`` and ``std_<class>`` (Monte Carlo standard deviation)
  for every class and, where the run explained its predictions, ``saliency`` (a Grad-CAM PNG relative to the run
  folder, upright) and ``saliency_class``.
- Fracture: ``predictions.csv`` has ``image``, ``<type>_probability`` for every fracture type, ``detections`` (a JSON
  list of ``{"class", "x", "y", "score"}`` in original pixels) and, when the run saved them, ``probability_map``
  (a NIfTI ``(W, H, 1, K)`` path relative to the run folder); ``froc_curve.csv`` has ``class``, ``fps_per_image``,
  ``sensitivity``. A calibrated model's run adds ``calibrated_<type>``, ``threshold_<type>``, ``operating_point``,
  ``lesion_operating_point`` and ``lesion_threshold_<type>`` (from ``FracturePredictionRecorder``).

The kind of run is read from the columns of ``predictions.csv``.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RUN_KINDS", "EvaluationRun", "RunOutputError", "aligned_to", "load_evaluation_run", "probability_map_paths"]

RUN_KINDS = ("vkd", "fracture")
VKD_PROBABILITY_PREFIX = "prob_"
VKD_STD_PREFIX = "std_"
FRACTURE_PROBABILITY_SUFFIX = "_probability"


class RunOutputError(ValueError):
    """An evaluation output file that is missing a column or holds a value that cannot be read; names the file."""


@dataclass
class EvaluationRun:
    """The outputs of one evaluation, one record per image in ``predictions.csv`` order.

    Attributes:
        run_dir: the folder ``evaluate.json`` wrote.
        kind: ``"vkd"`` or ``"fracture"``.
        class_names: the ``K`` classes (VKD findings or fracture types), in column order.
        metrics: ``metrics.json`` as written (``None`` for a metric that was undefined).
        images: ``(N,)`` resolved image paths.
        probabilities: ``(N, K)`` per-class probabilities (VKD) or image-level type probabilities (fracture).
        stds: ``(N, K)`` Monte Carlo standard deviations (VKD), ``None`` for fracture runs.
        detections: per image, per class, a ``(M, 3)`` array of ``[x, y, score]`` (fracture), else ``None``.
        probability_maps: per image, the saved probability map's path or ``None``.
        saliency_maps: per image, the saved saliency PNG and the class it explains, or ``None`` (VKD).
        froc_curve: per fracture type, ``(fps_per_image, sensitivity)`` arrays from ``froc_curve.csv``.
        calibrated: ``(N, K)`` temperature-scaled image-level probabilities (a calibrated fracture run), else ``None``.
        operating_points: the operating points the run called at (a calibrated fracture run), else empty:
            ``{"image": rule, "thresholds": {type: threshold or None}, "lesion_fp_per_image": rate,
            "lesion_thresholds": {type: threshold or None}}``.
    """

    run_dir: Path
    kind: str
    class_names: list[str]
    metrics: dict[str, Any]
    images: list[str]
    probabilities: np.ndarray
    stds: np.ndarray | None = None
    detections: list[list[np.ndarray]] | None = None
    probability_maps: list[Path | None] = field(default_factory=list)
    saliency_maps: list[tuple[Path, str] | None] = field(default_factory=list)
    froc_curve: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    calibrated: np.ndarray | None = None
    operating_points: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """A short label for tables: the run folder's parent and name (``vkd/eval``)."""
        return f"{self.run_dir.parent.name}/{self.run_dir.name}"


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise FileNotFoundError(
            f"Evaluation output {str(path)!r} does not exist; run the bundle's evaluate.json first."
        )
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _number(value: str, path: Path, row: int, column: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RunOutputError(f"{path}: row {row} column {column!r} holds {value!r}, not a number.") from None


def _detections(value: str, class_names: list[str], path: Path, row: int) -> list[np.ndarray]:
    try:
        found = json.loads(value)
        per_class = {name: [] for name in class_names}
        for detection in found:
            per_class[detection["class"]].append([detection["x"], detection["y"], detection["score"]])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise RunOutputError(
            f"{path}: row {row} column 'detections' is not a JSON list of detections of {class_names} ({error})."
        ) from None
    return [np.asarray(per_class[name], dtype=np.float64).reshape(-1, 3) for name in class_names]


def _read_froc_curve(path: Path, class_names: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    columns, rows = _read_csv(path)
    missing = {"class", "fps_per_image", "sensitivity"} - set(columns)
    if missing:
        raise RunOutputError(f"{path} lacks column(s) {sorted(missing)} (has {columns}).")
    curve: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in class_names}
    for index, row in enumerate(rows, start=2):
        if row["class"] not in curve:
            raise RunOutputError(f"{path}: row {index} names class {row['class']!r}, not one of {class_names}.")
        curve[row["class"]][0].append(_number(row["fps_per_image"], path, index, "fps_per_image"))
        curve[row["class"]][1].append(_number(row["sensitivity"], path, index, "sensitivity"))
    return {name: (np.asarray(fps), np.asarray(sens)) for name, (fps, sens) in curve.items()}


def _read_metrics(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"Evaluation output {str(path)!r} does not exist; run the bundle's evaluate.json first."
        )
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RunOutputError(f"{path} is not valid JSON ({error}).") from None
    if not isinstance(metrics, dict):
        raise RunOutputError(f"{path} must hold a JSON object of metrics.")
    return {key: math.nan if value is None else value for key, value in metrics.items()}


def _operating_points(row: dict[str, str], class_names: list[str]) -> dict[str, Any]:
    """The operating points of a calibrated fracture run, from one ``predictions.csv`` row (the same on every row)."""

    def threshold(column: str) -> float | None:
        return float(row[column]) if row.get(column) else None

    return {
        "image": row["operating_point"],
        "thresholds": {name: threshold(f"threshold_{name}") for name in class_names},
        "lesion_fp_per_image": row.get("lesion_operating_point"),
        "lesion_thresholds": {name: threshold(f"lesion_threshold_{name}") for name in class_names},
    }


def load_evaluation_run(run_dir: str | Path) -> EvaluationRun:
    """Read the run folder ``evaluate.json`` wrote; the kind (VKD or fracture) follows from ``predictions.csv``.

    Raises:
        FileNotFoundError: ``metrics.json``, ``predictions.csv`` or (fracture) ``froc_curve.csv`` is missing.
        RunOutputError: a file lacks a column or holds a value that cannot be read.
    """
    run_dir = Path(run_dir).resolve()
    metrics = _read_metrics(run_dir / "metrics.json")
    predictions = run_dir / "predictions.csv"
    columns, rows = _read_csv(predictions)
    if "image" not in columns:
        raise RunOutputError(f"{predictions} lacks the 'image' column (has {columns}).")
    if not rows:
        raise RunOutputError(f"{predictions} holds no predictions.")
    images = [str(Path(row["image"]).resolve()) for row in rows]
    maps = [(run_dir / row["probability_map"]).resolve() if row.get("probability_map") else None for row in rows]
    vkd_classes = [c[len(VKD_PROBABILITY_PREFIX) :] for c in columns if c.startswith(VKD_PROBABILITY_PREFIX)]
    fracture_types = [
        c[: -len(FRACTURE_PROBABILITY_SUFFIX)] for c in columns if c.endswith(FRACTURE_PROBABILITY_SUFFIX)
    ]

    def table(prefix: str, names: list[str], suffix: str = "") -> np.ndarray:
        return np.array(
            [
                [_number(row[f"{prefix}{n}{suffix}"], predictions, i, f"{prefix}{n}{suffix}") for n in names]
                for i, row in enumerate(rows, start=2)
            ]
        )

    if vkd_classes:
        missing = [f"{VKD_STD_PREFIX}{n}" for n in vkd_classes if f"{VKD_STD_PREFIX}{n}" not in columns]
        if missing:
            raise RunOutputError(f"{predictions} lacks Monte Carlo column(s) {missing}.")
        return EvaluationRun(
            run_dir=run_dir,
            kind="vkd",
            class_names=vkd_classes,
            metrics=metrics,
            images=images,
            probabilities=table(VKD_PROBABILITY_PREFIX, vkd_classes),
            stds=table(VKD_STD_PREFIX, vkd_classes),
            probability_maps=maps,
            saliency_maps=[
                ((run_dir / row["saliency"]).resolve(), row.get("saliency_class", "")) if row.get("saliency") else None
                for row in rows
            ],
        )
    if fracture_types and "detections" in columns:
        calibrated = all(f"calibrated_{name}" in columns for name in fracture_types) and "operating_point" in columns
        return EvaluationRun(
            run_dir=run_dir,
            kind="fracture",
            class_names=fracture_types,
            metrics=metrics,
            images=images,
            probabilities=table("", fracture_types, FRACTURE_PROBABILITY_SUFFIX),
            detections=[
                _detections(row["detections"], fracture_types, predictions, i) for i, row in enumerate(rows, 2)
            ],
            probability_maps=maps,
            froc_curve=_read_froc_curve(run_dir / "froc_curve.csv", fracture_types),
            calibrated=table("calibrated_", fracture_types) if calibrated else None,
            operating_points=_operating_points(rows[0], fracture_types) if calibrated else {},
        )
    raise RunOutputError(
        f"{predictions} is neither a VKD evaluation ('prob_<class>' and 'std_<class>' columns) nor a fracture "
        f"evaluation ('<type>_probability' and 'detections' columns); columns: {columns}."
    )


def probability_map_paths(predictions_dir: str | Path) -> dict[str, Path]:
    """Saved probability maps of a fracture inference folder, keyed by resolved image path.

    ``predictions_dir`` holds the ``predictions.csv`` of ``inference.json`` (which saves the maps; ``evaluate.json``
    does not), with its ``probability_map`` column relative to that folder.
    """
    predictions_dir = Path(predictions_dir).resolve()
    path = predictions_dir / "predictions.csv"
    columns, rows = _read_csv(path)
    if "probability_map" not in columns or "image" not in columns:
        raise RunOutputError(f"{path} lacks the 'image' or 'probability_map' column (has {columns}).")
    return {
        str(Path(row["image"]).resolve()): (predictions_dir / row["probability_map"]).resolve()
        for row in rows
        if row["probability_map"]
    }


def aligned_to(run: EvaluationRun, reference: EvaluationRun) -> EvaluationRun:
    """``run``'s records reordered to ``reference``'s images, so two evaluations can be compared image by image.

    Raises:
        ValueError: the runs are of different kinds or classes, or ``run`` lacks some of ``reference``'s images.
    """
    if run.kind != reference.kind or run.class_names != reference.class_names:
        raise ValueError(
            f"Cannot compare {run.run_dir} ({run.kind}, {run.class_names}) with {reference.run_dir} "
            f"({reference.kind}, {reference.class_names}): kinds and classes must match."
        )
    position = {image: i for i, image in enumerate(run.images)}
    missing = [image for image in reference.images if image not in position]
    if missing:
        raise ValueError(
            f"{run.run_dir} has no prediction for {len(missing)} image(s) of {reference.run_dir}, "
            f"first: {missing[0]}; compare evaluations of the same images."
        )
    order = [position[image] for image in reference.images]
    return EvaluationRun(
        run_dir=run.run_dir,
        kind=run.kind,
        class_names=run.class_names,
        metrics=run.metrics,
        images=list(reference.images),
        probabilities=run.probabilities[order],
        stds=None if run.stds is None else run.stds[order],
        detections=None if run.detections is None else [run.detections[i] for i in order],
        probability_maps=[run.probability_maps[i] for i in order],
        saliency_maps=[run.saliency_maps[i] for i in order] if run.saliency_maps else [],
        froc_curve=run.froc_curve,
    )
