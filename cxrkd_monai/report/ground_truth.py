"""The datalist items behind a run's predictions: labels, label masks, patients and (fracture) lesion annotations.

Predictions and datalist items are matched on the resolved image path. A datalist image without a prediction (an
image the evaluation could not load) is left out and counted in a log line; a prediction for an image the datalist
split does not hold is an error, since its labels are unknown.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cxrkd_monai.data import load_datalist
from cxrkd_monai.report.run_outputs import EvaluationRun
from cxrkd_monai.report.settings import ReportSettings
from cxrkd_monai.transforms.detection import map_pixel_half_diagonal
from cxrkd_monai.transforms.geometry import LetterboxGeometry

__all__ = ["RunTruth", "TestImageTruth", "match_ground_truth", "read_test_truth"]

logger = logging.getLogger(__name__)


@dataclass
class TestImageTruth:
    """One test image's record labels ``(K,)``, boxes ``(M, 5)`` and points ``(M, 3)`` (original pixels, class
    index last), and the hit radius of a perfectly placed detection (half a map pixel's diagonal)."""

    label: np.ndarray
    boxes: np.ndarray
    points: np.ndarray
    min_hit_radius: float


def read_test_truth(
    datalist_path: Path, class_names: list[str], image_size: int, output_stride: int, split: str = "test"
) -> dict[str, TestImageTruth]:
    """Ground truth of each image of the datalist's ``split``, keyed by resolved image path, in original pixels.

    ``image_size`` and ``output_stride`` are the bundle's: they give the letterbox of each image and so the
    hit radius :class:`~cxrkd_monai.handlers.FROCScore` uses.
    """
    images = {}
    map_shape = (image_size // output_stride, image_size // output_stride)
    for item in load_datalist(str(datalist_path), split):
        with Image.open(item["image"]) as image:
            original_size = image.size  # (width, height): axis 0 is x, as the bundle loads it
        geometry = LetterboxGeometry.fit(original_size, (image_size, image_size))
        index = {name: k for k, name in enumerate(class_names)}
        images[str(Path(item["image"]).resolve())] = TestImageTruth(
            label=np.asarray(item["image_label"], dtype=np.float64),
            boxes=np.array([[*b[:4], index[b[4]]] for b in item.get("boxes", [])], dtype=np.float64).reshape(-1, 5),
            points=np.array([[*p[:2], index[p[2]]] for p in item.get("points", [])], dtype=np.float64).reshape(-1, 3),
            min_hit_radius=map_pixel_half_diagonal(geometry, map_shape),
        )
    return images


@dataclass
class RunTruth:
    """Ground truth aligned with an :class:`~cxrkd_monai.report.run_outputs.EvaluationRun`'s ``N`` images.

    Attributes:
        items: the datalist items, in the run's image order (subgroup fields such as ``sex`` are read from them).
        patient_ids: ``(N,)`` patient of each image (the image path where an item has no ``patient_id``); the
            bootstrap resamples patients, keeping a patient's images together.
        labels: ``(N, K)`` binary labels (VKD ``label``, fracture ``image_label``), NaN where unobserved.
        observed: ``(N, K)`` bool, ``label_mask > 0.5`` (all true where an item has no mask).
        lesions: fracture runs: per image, its boxes ``(M, 5)`` and points ``(M, 3)`` in original pixels (class index
            last) and the hit radius of a perfectly placed detection; ``None`` for VKD runs.
    """

    items: list[dict]
    patient_ids: np.ndarray
    labels: np.ndarray
    observed: np.ndarray
    lesions: list[TestImageTruth] | None = None


def _vector(values: list, length: int, where: str) -> np.ndarray:
    if not isinstance(values, list) or len(values) != length:
        raise ValueError(f"{where} must be a list of {length} values, got {values!r}.")
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def match_ground_truth(run: EvaluationRun, settings: ReportSettings) -> RunTruth:
    """The datalist items of ``settings.split`` for each of the run's images (see the module docstring).

    Raises:
        ValueError: a predicted image is not in the split, or an item's label has the wrong length (named).
    """
    listed = load_datalist(str(settings.datalist), settings.split, subgroup_fields=True)
    items = {str(Path(item["image"]).resolve()): item for item in listed}
    unknown = [image for image in run.images if image not in items]
    if unknown:
        raise ValueError(
            f"{len(unknown)} image(s) of {run.run_dir / 'predictions.csv'} are not in {settings.datalist} "
            f"'{settings.split}', first: {unknown[0]}; pass the datalist and split the run evaluated."
        )
    left_out = len(set(items) - set(run.images))
    if left_out:
        logger.warning(
            "%d image(s) of %s '%s' have no prediction in %s; left out.",
            left_out,
            settings.datalist,
            settings.split,
            run.run_dir,
        )
    matched = [items[image] for image in run.images]
    label_key = "label" if run.kind == "vkd" else "image_label"
    num_classes = len(run.class_names)
    where = f"Datalist {settings.datalist} '{settings.split}' item"
    labels = np.stack([_vector(i.get(label_key), num_classes, f"{where} {i['image']} '{label_key}'") for i in matched])
    masks = np.stack(
        [
            _vector(i["label_mask"], num_classes, f"{where} {i['image']} 'label_mask'")
            if "label_mask" in i
            else np.ones(num_classes)
            for i in matched
        ]
    )
    observed = (masks > 0.5) & np.isfinite(labels)
    without_patient = sum("patient_id" not in item for item in matched)
    if without_patient:
        logger.warning(
            "%d item(s) of %s carry no patient_id; each counts as its own patient in the bootstrap.",
            without_patient,
            settings.datalist,
        )
    patient_ids = np.array([str(item.get("patient_id", item["image"])) for item in matched])
    lesions = None
    if run.kind == "fracture":
        truth = read_test_truth(
            settings.datalist, run.class_names, settings.image_size[0], settings.output_stride, split=settings.split
        )
        lesions = [truth[image] for image in run.images]
    return RunTruth(items=matched, patient_ids=patient_ids, labels=labels, observed=observed, lesions=lesions)
