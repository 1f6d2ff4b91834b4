"""Fixtures: tiny evaluation run folders in the formats both bundles' ``evaluate.json`` write, on a generated phantom.

The predictions are made up with known properties (a VKD model that ranks its positives higher, a detector that finds
exactly five of the test split's eight rib lesions and nothing else of note), so the figures a report shows can be
checked against numbers computed by hand or with scikit-learn.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import NibabelWriter
from torch.utils.tensorboard import SummaryWriter

from cxrkd_monai.metrics import expected_calibration_error, micro_auroc, per_class_auroc
from cxrkd_monai.metrics.froc import FROCMetric, froc_curve_rows
from cxrkd_monai.phantom import generate_phantom_dataset
from cxrkd_monai.report.ground_truth import read_test_truth
from cxrkd_monai.utils.atomic_files import write_csv_atomically

PHANTOM_PATIENTS = 30
IMAGE_SIZE = 64
FRACTURE_OVERRIDES = {"image_size": [IMAGE_SIZE, IMAGE_SIZE], "output_stride": 4}
DETECTED_RIB_LESIONS = 5


@pytest.fixture(scope="session")
def phantom(tmp_path_factory) -> Path:
    """A generated phantom dataset: images, ``datalist_vkd.json`` and ``datalist_fracture.json``."""
    root = tmp_path_factory.mktemp("phantom")
    generate_phantom_dataset(root, num_patients=PHANTOM_PATIENTS, image_size=(IMAGE_SIZE, IMAGE_SIZE), seed=0)
    return root


@pytest.fixture(scope="session")
def vkd_runs(phantom, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """A VKD run and a weaker "baseline" run of the same test images: ``{name: (run folder, arrays)}``."""
    root = tmp_path_factory.mktemp("vkd_runs")
    return {
        name: (root / name / "eval", write_vkd_run(phantom, root / name / "eval", seed, separation))
        for name, seed, separation in (("vkd", 0, 1.5), ("baseline", 1, 0.5))
    }


@pytest.fixture(scope="session")
def fracture_run(phantom, tmp_path_factory) -> tuple[Path, dict]:
    """A fracture run folder (see :func:`write_fracture_run`) and the arrays behind it."""
    run_dir = tmp_path_factory.mktemp("aals") / "eval"
    return run_dir, write_fracture_run(phantom, run_dir)


def _test_items(datalist: Path) -> list[dict]:
    items = json.loads(datalist.read_text())["test"]
    return [{**item, "image": str((datalist.parent / item["image"]).resolve())} for item in items]


def write_vkd_run(phantom: Path, run_dir: Path, seed: int, separation: float) -> dict:
    """A VKD run folder: ``predictions.csv`` (``image``, ``prob_<class>``, ``std_<class>``) and ``metrics.json``.

    Probabilities are ``sigmoid(separation * (2 label - 1) + N(0, 1))``; returns the arrays behind them.
    """
    datalist = phantom / "datalist_vkd.json"
    class_names = json.loads(datalist.read_text())["class_names"]
    items = _test_items(datalist)
    rng = np.random.default_rng(seed)
    labels = np.array([item["label"] for item in items], dtype=np.float64)
    probabilities = 1.0 / (1.0 + np.exp(-(separation * (2 * labels - 1) + rng.normal(size=labels.shape))))
    stds = rng.uniform(0.01, 0.2, labels.shape)
    records = [
        {
            "image": item["image"],
            **{f"prob_{n}": float(p) for n, p in zip(class_names, prob)},
            **{f"std_{n}": float(s) for n, s in zip(class_names, std)},
        }
        for item, prob, std in zip(items, probabilities, stds)
    ]
    write_csv_atomically(run_dir / "predictions.csv", records)
    per_class = per_class_auroc(probabilities, labels)
    defined = [v for v in per_class if np.isfinite(v)]
    metrics = {
        "val_macro_auroc": float(np.mean(defined)),
        **{f"val_macro_auroc_{n}": v for n, v in zip(class_names, per_class)},
        "micro_auroc": micro_auroc(probabilities, labels),
        "ece": expected_calibration_error(probabilities, labels, 10),
    }
    (run_dir / "metrics.json").write_text(
        json.dumps({k: None if not np.isfinite(v) else v for k, v in metrics.items()})
    )
    return {"class_names": class_names, "labels": labels, "probabilities": probabilities, "stds": stds, "items": items}


def write_fracture_run(phantom: Path, run_dir: Path, with_maps: bool = True) -> dict:
    """A fracture run folder as ``evaluate.json`` writes it, plus saved maps and stage-2 TensorBoard scalars.

    Detections: one at the centre of each of the first :data:`DETECTED_RIB_LESIONS` rib boxes (score 0.9), and one
    false positive (score 0.1, far from every lesion) on the first image without fractures. With no false positive
    scored above a true one, the rib sensitivity is 5/8 at every operating point, so the rib FROC score is 0.625.
    """
    datalist = phantom / "datalist_fracture.json"
    class_names = json.loads(datalist.read_text())["class_names"]
    items = _test_items(datalist)
    remaining = DETECTED_RIB_LESIONS
    records, maps_dir = [], run_dir / "maps"
    false_positive_placed = False
    for item in items:
        detections = []
        for x1, y1, x2, y2, name in item.get("boxes", []):
            if name == "rib_fracture" and remaining:
                detections.append({"class": name, "x": (x1 + x2) / 2, "y": (y1 + y2) / 2, "score": 0.9})
                remaining -= 1
        if not item.get("boxes") and not false_positive_placed:
            detections.append({"class": "clavicle_fracture", "x": 2.0, "y": 2.0, "score": 0.1})
            false_positive_placed = True
        record = {"image": item["image"]}
        for name in class_names:
            record[f"{name}_probability"] = max([d["score"] for d in detections if d["class"] == name], default=0.02)
        record["detections"] = detections
        if with_maps:
            prob_map = torch.zeros(len(class_names), IMAGE_SIZE, IMAGE_SIZE)  # (K, W, H), as the recorder saves it
            for d in detections:
                prob_map[class_names.index(d["class"]), int(d["x"]), int(d["y"])] = d["score"]
            writer = NibabelWriter(output_dtype=np.float32)
            writer.set_data_array(prob_map, channel_dim=0)
            writer.set_metadata({"affine": np.eye(4), "original_affine": np.eye(4)}, resample=False)
            path = maps_dir / f"{Path(item['image']).name[:-4]}_prob.nii.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            writer.write(str(path), verbose=False)
            record["probability_map"] = path.relative_to(run_dir).as_posix()
        records.append(record)
    write_csv_atomically(run_dir / "predictions.csv", records)
    truth = read_test_truth(datalist, class_names, IMAGE_SIZE, 4)
    froc = FROCMetric(len(class_names), class_names)
    for record in records:
        lesion = truth[record["image"]]
        detections = [
            np.array([[d["x"], d["y"], d["score"]] for d in record["detections"] if d["class"] == n]).reshape(-1, 3)
            for n in class_names
        ]
        froc.update(detections, lesion.boxes, lesion.points, min_hit_radius=lesion.min_hit_radius)
    result = froc.compute()
    write_csv_atomically(run_dir / "froc_curve.csv", froc_curve_rows(result))
    labels = np.array([item["image_label"] for item in items], dtype=np.float64)
    probabilities = np.array([[r[f"{n}_probability"] for n in class_names] for r in records])
    per_class = per_class_auroc(probabilities, labels)
    scores = {n: result[n]["score"] for n in class_names}
    metrics = {
        "val_froc": float(np.nanmean([s for s in scores.values()])),
        **{f"val_froc_{n}": s for n, s in scores.items()},
        "val_auroc": float(np.nanmean(per_class)),
        **{f"val_auroc_{n}": v for n, v in zip(class_names, per_class)},
    }
    (run_dir / "metrics.json").write_text(
        json.dumps({k: None if not np.isfinite(v) else v for k, v in metrics.items()})
    )
    with SummaryWriter(log_dir=str(run_dir)) as writer:
        for epoch, rate in enumerate((0.0, 0.25, 0.5), start=1):
            writer.add_scalar("pseudo_positive_rate", rate, epoch)
            writer.add_scalar("dp_raised_fraction", rate / 10, epoch)
    return {
        "class_names": class_names,
        "labels": labels,
        "probabilities": probabilities,
        "items": items,
        "detected_rib_lesions": DETECTED_RIB_LESIONS,
        "overrides": FRACTURE_OVERRIDES,
    }
