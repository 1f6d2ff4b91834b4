import json

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.handlers import from_engine

from cxrkd_monai.handlers import FROCScore, MultiLabelAUROC, MultiLabelECE
from cxrkd_monai.handlers.bootstrap_intervals import BootstrapIntervals
from cxrkd_monai.handlers.metrics_writer import MetricsWriter
from cxrkd_monai.metrics import per_class_auroc
from cxrkd_monai.metrics.bootstrap import bootstrap_metric, resample_indices
from cxrkd_monai.transforms.geometry import LetterboxGeometry


def _evaluation(num_patients=25, seed=0):
    """Decollated evaluator batches of two classes; each patient has two or three images."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(num_patients), rng.integers(2, 4, num_patients))
    labels = rng.integers(0, 2, (len(patients), 2)).astype(np.float32)
    probabilities = np.clip(0.3 * labels + 0.7 * rng.random(labels.shape), 0, 1).astype(np.float32)
    masks = (rng.random(labels.shape) > 0.1).astype(np.float32)
    items = [
        {"pred_prob": torch.tensor(p), "label": torch.tensor(y), "label_mask": torch.tensor(m), "patient_id": f"p{k}"}
        for p, y, m, k in zip(probabilities, labels, masks, patients)
    ]
    batches = [items[i : i + 8] for i in range(0, len(items), 8)]
    return batches, probabilities, labels, masks, [f"p{k}" for k in patients]


def _metrics():
    output, mask = from_engine(["pred_prob", "label"]), from_engine(["label_mask"])
    return {
        "val_macro_auroc": MultiLabelAUROC(["a", "b"], output_transform=output, mask_transform=mask),
        "ece": MultiLabelECE(num_bins=5, output_transform=output, mask_transform=mask),
    }


def test_metrics_json_gains_patient_level_intervals_of_every_multilabel_metric(tmp_path):
    batches, probabilities, labels, masks, patients = _evaluation()
    evaluator = Engine(lambda engine, batch: batch)
    metrics = _metrics()
    for name, metric in metrics.items():
        metric.attach(evaluator, name)
    intervals = BootstrapIntervals({**metrics, "val_froc": object()}, num_resamples=120, confidence=0.9, seed=3)
    intervals.attach(evaluator)
    MetricsWriter(str(tmp_path), extra=intervals.summary).attach(evaluator)
    evaluator.run(batches)

    written = json.loads((tmp_path / "metrics.json").read_text())
    summary = written["bootstrap"]
    assert (summary["num_resamples"], summary["seed"], summary["confidence"]) == (120, 3, 0.9)
    assert (summary["unit"], summary["num_units"]) == ("patient", 25)
    assert set(summary["intervals"]) == {"val_macro_auroc", "val_macro_auroc_a", "val_macro_auroc_b", "ece"}
    expected = bootstrap_metric(
        lambda s, y, m: dict(zip(["a", "b"], per_class_auroc(s, y, m))),
        probabilities, labels, masks, groups=patients, num_resamples=120, confidence=0.9, seed=3,
    )  # fmt: skip
    for name in ("a", "b"):
        interval = summary["intervals"][f"val_macro_auroc_{name}"]
        assert interval["estimate"] == pytest.approx(written[f"val_macro_auroc_{name}"], abs=1e-12)
        assert interval["lower"] == pytest.approx(expected[name].low, abs=1e-12)
        assert interval["upper"] == pytest.approx(expected[name].high, abs=1e-12)
    assert summary["intervals"]["ece"]["lower"] <= written["ece"] <= summary["intervals"]["ece"]["upper"]
    # the bootstrap leaves the reported per-class values as they were
    assert metrics["val_macro_auroc"].metric_fn.per_class["a"] == written["val_macro_auroc_a"]


def test_without_patients_the_images_are_resampled(tmp_path):
    batches, *_ = _evaluation()
    for batch in batches:
        for item in batch:
            del item["patient_id"]
    evaluator = Engine(lambda engine, batch: batch)
    metrics = _metrics()
    for name, metric in metrics.items():
        metric.attach(evaluator, name)
    intervals = BootstrapIntervals(metrics, num_resamples=20)
    intervals.attach(evaluator)
    evaluator.run(batches)
    assert intervals.summary()["bootstrap"]["unit"] == "image"
    assert intervals.summary()["bootstrap"]["num_units"] == sum(len(batch) for batch in batches)


def test_froc_score_intervals_match_a_direct_recomputation_on_the_same_patient_resamples(tmp_path):
    """``val_froc`` and its per-type scores get intervals; each resample equals a fresh FROCScore on its images."""
    classes = ["rib_fracture", "clavicle_fracture"]
    geometry = LetterboxGeometry.fit((100, 50), (64, 64))
    rng = np.random.default_rng(4)
    num_items = 16
    maps = torch.tensor(rng.random((num_items, 2, 16, 16)) * 0.5, dtype=torch.float32)
    # every item has a rib box; items 0-7 also a clavicle box; the maps peak inside some of them
    boxes = []
    for i in range(num_items):
        rows = [[30.0, 20.0, 40.0, 35.0, 0.0]] + ([[60.0, 10.0, 75.0, 20.0, 1.0]] if i < 8 else [])
        boxes.append(geometry.boxes_to_grid(np.array(rows)))
        if i % 3:
            maps[i, 0, 8, 5] = 0.6 + 0.02 * i  # inside the rib box
    patients = [f"p{i // 2}" for i in range(num_items)]
    batches = [
        {
            "output": {"pred": maps[s : s + 4]},
            "boxes": boxes[s : s + 4],
            "geometry": torch.stack([geometry.to_tensor()] * 4),
            "patient_id": patients[s : s + 4],
            "image": torch.zeros(4, 1, 64, 64),
        }
        for s in range(0, num_items, 4)
    ]
    settings = {"fp_per_image": (0.5, 1.0, 2.0), "point_radius": 10.0}
    froc = FROCScore(classes, **settings)
    evaluator = Engine(lambda engine, batch: batch["output"])
    froc.attach(evaluator, "val_froc")
    intervals = BootstrapIntervals({"val_froc": froc}, num_resamples=60, confidence=0.9, seed=2)
    intervals.attach(evaluator)
    MetricsWriter(str(tmp_path), extra=intervals.summary).attach(evaluator)
    evaluator.run(batches)

    written = json.loads((tmp_path / "metrics.json").read_text())
    found = written["bootstrap"]["intervals"]
    assert set(found) == {"val_froc", "val_froc_rib_fracture", "val_froc_clavicle_fracture"}
    resampled = {name: [] for name in found}
    for index in resample_indices(num_items, 60, seed=2, groups=patients):
        direct = FROCScore(classes, **settings)
        direct.reset()
        direct.update(
            (
                maps[index],
                [boxes[i] for i in index],
                [None] * len(index),
                batches[0]["geometry"][:1].expand(len(index), -1, -1),
            )
        )
        resampled["val_froc"].append(direct.compute())
        for name in classes:
            resampled[f"val_froc_{name}"].append(direct.result[name]["score"])
    for name, values in resampled.items():
        low, high = np.percentile(values, [5.0, 95.0])
        assert found[name]["estimate"] == pytest.approx(written[name], abs=1e-12)
        assert (found[name]["lower"], found[name]["upper"]) == pytest.approx((low, high), abs=1e-12)
    assert found["val_froc"]["lower"] < found["val_froc"]["upper"]
