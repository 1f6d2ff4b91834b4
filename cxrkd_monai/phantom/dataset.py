"""The dataset writer: images, both bundles' datalists and a summary, for demos and tests only."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from cxrkd_monai.phantom.model import FRACTURE_CLASS_NAMES, VKD_CLASS_NAMES
from cxrkd_monai.phantom.regions import fracture_regions
from cxrkd_monai.phantom.render import render_chest_radiograph
from cxrkd_monai.phantom.reports import write_report
from cxrkd_monai.phantom.sampling import resolve_prevalence, sample_acquisition, sample_anatomy, sample_findings
from cxrkd_monai.prepare.splits import split_patients
from cxrkd_monai.utils.fracture_subsets import FRACTURE_SUBSETS, RECORD_POSITIVE, fracture_subset

__all__ = ["generate_phantom_dataset"]

# Which finding kinds make each VKD class positive, in the order of VKD_CLASS_NAMES.
_VKD_CLASS_KINDS = (
    ("cardiomegaly",),
    ("pleural_effusion",),
    ("lung_opacity",),
    ("nodule",),
    ("pneumothorax",),
    ("rib_fracture", "clavicle_fracture"),
)
_MIN_IMAGE_SIDE = 64
_SPLIT_NAMES = ("training", "validation", "test")
# Keeps the draw of the D_R images apart from every patient's stream ([seed, patient number, ...]).
_SUBSET_STREAM = 1_000_033


def generate_phantom_dataset(
    output_dir: str | Path,
    num_patients: int = 200,
    seed: int = 0,
    image_size: Sequence[int] = (256, 256),
    studies_per_patient: Sequence[int] = (1, 2),
    prevalence: Mapping[str, float] | None = None,
    region_annotated_fraction: float = 0.2,
    split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
) -> dict[str, str]:
    """Write a synthetic chest radiograph dataset (for demos and tests only) with both bundles' datalists.

    Output in ``output_dir``:

    - ``images/<patient>_<study>.png``: 8-bit grayscale posteroanterior radiographs of ``image_size``;
    - ``datalist_vkd.json``: ``class_names`` (:data:`VKD_CLASS_NAMES`) and ``training`` /
      ``validation`` / ``test`` items ``{"image", "report", "label", "patient_id"}``;
    - ``datalist_fracture.json``: ``class_names`` (:data:`FRACTURE_CLASS_NAMES`) and items
      ``{"image", "image_label", "subset", "boxes", "points", "patient_id"}``. In ``training`` a
      ``region_annotated_fraction`` of the fracture-positive images are ``D_R`` (with boxes and points),
      the others ``D_P`` (no ``boxes`` / ``points`` keys); negatives are ``D_N`` with empty lists.
      Validation and test items always carry every fracture's box and point;
    - ``summary.json``: the arguments, and per split the counts, positives and prevalence of each class.

    Patients are split, all their studies together, by :func:`cxrkd_monai.prepare.split_patients`
    with ``seed``; a split with a positive fraction must not come out empty. The output is byte-identical
    for the same arguments. Each patient's anatomy and each study's positioning depend only on
    ``seed`` and the patient and study numbers, so changing a prevalence changes which findings are
    drawn but not the patients.

    Args:
        output_dir: folder to write into (created if missing).
        num_patients: number of patients.
        seed: seed of everything random.
        image_size: ``(W, H)`` in pixels, each at least 64.
        studies_per_patient: ``(min, max)`` number of studies per patient, inclusive.
        prevalence: probability of each finding kind in :data:`FINDING_KINDS`, overriding
            :data:`DEFAULT_PREVALENCE`.
        region_annotated_fraction: fraction of the fracture-positive training images with region
            annotations (at least one image when positive and there are fracture-positive images).
        split_fractions: fractions of patients in training, validation and test; they sum to 1.

    Returns:
        Paths of ``datalist_vkd``, ``datalist_fracture``, ``image_dir`` and ``summary``.

    Example:
        >>> paths = generate_phantom_dataset("phantom", num_patients=20, image_size=(128, 128))
        >>> sorted(paths)
        ['datalist_fracture', 'datalist_vkd', 'image_dir', 'summary']
    """
    width, height = _checked_image_size(image_size)
    fewest_studies, most_studies = _checked_studies_per_patient(studies_per_patient)
    fractions = _checked_split_fractions(split_fractions)
    rates = resolve_prevalence(prevalence)
    if not 0.0 <= region_annotated_fraction <= 1.0:
        raise ValueError(f"region_annotated_fraction must be in [0, 1], got {region_annotated_fraction!r}.")
    splits = _split_patients(num_patients, fractions, seed)

    root = Path(output_dir)
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    digits = max(4, len(str(num_patients)))
    studies = []
    for index in range(num_patients):
        patient_id = f"p{index + 1:0{digits}d}"
        patient_rng = np.random.default_rng([seed, index])
        anatomy = sample_anatomy(patient_rng)
        for study in range(int(patient_rng.integers(fewest_studies, most_studies + 1))):
            study_rng = np.random.default_rng([seed, index, study + 1])
            acquisition = sample_acquisition(study_rng)
            findings = sample_findings(study_rng, anatomy, rates)
            image = f"images/{patient_id}_s{study + 1:02d}.png"
            pixels = render_chest_radiograph(anatomy, acquisition, findings, (width, height))
            Image.fromarray(pixels).save(root / image, format="PNG")
            kinds = {finding.kind for finding in findings}
            studies.append({
                "split": splits[index],
                "patient_id": patient_id,
                "image": image,
                "report": write_report(findings, study_rng),
                "label": [int(bool(kinds.intersection(group))) for group in _VKD_CLASS_KINDS],
                "image_label": [int(name in kinds) for name in FRACTURE_CLASS_NAMES],
                "regions": fracture_regions(anatomy, acquisition, findings, (width, height)),
            })

    region_annotated = _draw_region_annotated(studies, region_annotated_fraction, seed)
    vkd_datalist: dict[str, list] = {"class_names": list(VKD_CLASS_NAMES)}
    fracture_datalist: dict[str, list] = {"class_names": list(FRACTURE_CLASS_NAMES)}
    for split in _SPLIT_NAMES:
        vkd_datalist[split] = [
            {"image": s["image"], "report": s["report"], "label": s["label"], "patient_id": s["patient_id"]}
            for s in studies
            if s["split"] == split
        ]
        fracture_datalist[split] = [
            _fracture_item(s, position in region_annotated) for position, s in enumerate(studies) if s["split"] == split
        ]
    summary = _summary(studies, fracture_datalist, rates, seed, (width, height), region_annotated_fraction)

    paths = {
        "datalist_vkd": root / "datalist_vkd.json",
        "datalist_fracture": root / "datalist_fracture.json",
        "summary": root / "summary.json",
    }
    contents = {"datalist_vkd": vkd_datalist, "datalist_fracture": fracture_datalist, "summary": summary}
    for key, content in contents.items():
        paths[key].write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return {
        "datalist_vkd": str(paths["datalist_vkd"]),
        "datalist_fracture": str(paths["datalist_fracture"]),
        "image_dir": str(image_dir),
        "summary": str(paths["summary"]),
    }


def _checked_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, (str, bytes)) or len(image_size) != 2:
        raise ValueError(f"image_size must be (W, H), got {image_size!r}.")
    width, height = (int(side) for side in image_size)
    if min(width, height) < _MIN_IMAGE_SIDE:
        raise ValueError(f"image_size sides must be at least {_MIN_IMAGE_SIDE} pixels, got {tuple(image_size)}.")
    return width, height


def _checked_studies_per_patient(studies_per_patient: Sequence[int]) -> tuple[int, int]:
    if isinstance(studies_per_patient, (str, bytes)) or len(studies_per_patient) != 2:
        raise ValueError(f"studies_per_patient must be (min, max), got {studies_per_patient!r}.")
    fewest, most = (int(count) for count in studies_per_patient)
    if not 1 <= fewest <= most:
        raise ValueError(f"studies_per_patient must satisfy 1 <= min <= max, got {tuple(studies_per_patient)}.")
    return fewest, most


def _checked_split_fractions(split_fractions: Sequence[float]) -> np.ndarray:
    fractions = np.asarray(split_fractions, dtype=np.float64)
    if fractions.shape != (3,) or np.any(fractions < 0) or not math.isclose(fractions.sum(), 1.0, abs_tol=1e-6):
        raise ValueError(
            f"split_fractions must be three non-negative fractions (training, validation, test) summing to 1, "
            f"got {tuple(split_fractions)}."
        )
    if fractions[0] == 0:
        raise ValueError(f"split_fractions must give training a positive fraction, got {tuple(split_fractions)}.")
    return fractions


def _split_patients(num_patients: int, fractions: np.ndarray, seed: int) -> list[str]:
    """The split of every patient (by patient number), each split with a positive fraction non-empty."""
    if int(num_patients) != num_patients or num_patients < 1:
        raise ValueError(f"num_patients must be a positive integer, got {num_patients!r}.")
    assignment = split_patients(list(range(num_patients)), tuple(fractions), seed)
    splits = [assignment[index] for index in range(num_patients)]
    empty = [name for name, fraction in zip(_SPLIT_NAMES, fractions) if fraction > 0 and name not in splits]
    if empty:
        raise ValueError(
            f"num_patients={num_patients} leaves the {empty} split(s) empty with split_fractions "
            f"{tuple(float(f) for f in fractions)}; use more patients."
        )
    return splits


def _draw_region_annotated(studies: Sequence[dict], fraction: float, seed: int) -> set[int]:
    """Positions (in ``studies``) of the fracture-positive training images that become ``D_R``."""
    positives = [i for i, s in enumerate(studies) if s["split"] == "training" and any(s["image_label"])]
    count = round(fraction * len(positives))
    if fraction > 0 and positives:
        count = max(1, count)
    chosen = np.random.default_rng([seed, _SUBSET_STREAM]).choice(len(positives), size=count, replace=False)
    return {positives[i] for i in chosen}


def _fracture_item(study: Mapping, region_annotated: bool) -> dict:
    positive = any(study["image_label"])
    item = {"image": study["image"], "image_label": study["image_label"]}
    if study["split"] == "training" and positive and not region_annotated:
        item["subset"] = RECORD_POSITIVE
    else:
        item["subset"] = fracture_subset([positive], has_regions=positive)
        item["boxes"] = [[*(round(v, 2) for v in r.box), r.class_name] for r in study["regions"]]
        item["points"] = [[*(round(v, 2) for v in r.point), r.class_name] for r in study["regions"]]
    item["patient_id"] = study["patient_id"]
    return item


def _summary(
    studies: Sequence[dict],
    fracture_datalist: Mapping[str, list],
    rates: Mapping[str, float],
    seed: int,
    image_size: tuple[int, int],
    region_annotated_fraction: float,
) -> dict:
    splits = {}
    for split in _SPLIT_NAMES:
        members = [s for s in studies if s["split"] == split]
        count = len(members)
        vkd_positives = {n: sum(s["label"][i] for s in members) for i, n in enumerate(VKD_CLASS_NAMES)}
        fracture_positives = {n: sum(s["image_label"][i] for s in members) for i, n in enumerate(FRACTURE_CLASS_NAMES)}
        items = fracture_datalist[split]
        splits[split] = {
            "patients": len({s["patient_id"] for s in members}),
            "images": count,
            "vkd_positives": vkd_positives,
            "vkd_prevalence": {n: round(v / max(count, 1), 4) for n, v in vkd_positives.items()},
            "fracture_positives": fracture_positives,
            "fracture_prevalence": {n: round(v / max(count, 1), 4) for n, v in fracture_positives.items()},
            "fracture_subsets": {name: sum(item["subset"] == name for item in items) for name in FRACTURE_SUBSETS},
            "fracture_boxes": sum(len(item.get("boxes", ())) for item in items),
        }
    return {
        "description": (
            "Synthetic chest radiographs for demos and tests only; not for any clinical or scientific claim."
        ),
        "seed": seed,
        "image_size": list(image_size),
        "prevalence": dict(rates),
        "region_annotated_fraction": region_annotated_fraction,
        "splits": splits,
    }
