"""Fracture-bundle metrics and handlers on hand-built maps: pseudo-positive rate, FROC, curve file, predictions."""

from __future__ import annotations

import csv
import math

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from cxrkd_monai.engines.fracture_detections import (
    annotations_to_original,
    detect_in_original_pixels,
    output_stride_of,
)
from cxrkd_monai.engines.fracture_handlers import FROCCurveWriter, FROCScore, PseudoPositiveRate
from cxrkd_monai.engines.fracture_predictions import FracturePredictionRecorder
from cxrkd_monai.metrics.froc import FROCMetric, froc_curve_rows
from cxrkd_monai.transforms.geometry import LetterboxGeometry

CLASSES = ["rib_fracture", "clavicle_fracture"]
# A 100 x 50 (W x H) image letterboxed to 64 x 64: scale 0.64, resized 64 x 32, padded by 16 rows on top.
GEOMETRY = LetterboxGeometry.fit((100, 50), (64, 64))


def _maps_with_peaks(peaks: dict[tuple[int, int, int], float], num_items: int = 1) -> torch.Tensor:
    """(B, 2, 16, 16) maps (stride 4 on the 64 x 64 grid), zero except at ``(item, class, x, y)`` peaks."""
    maps = torch.zeros(num_items, 2, 16, 16)
    for (item, k, x), value in peaks.items():
        maps[item, k, x[0], x[1]] = value
    return maps


def _engine_with_metric(metric, name: str) -> Engine:
    engine = Engine(lambda engine, batch: batch["output"])
    metric.attach(engine, name)
    return engine


# --- pseudo-positive rate ------------------------------------------------------------------------------


def _dp_maps(peaks: list[list[float]]) -> torch.Tensor:
    maps = torch.full((len(peaks), 2, 4, 4), 0.05)
    for i, row in enumerate(peaks):
        for k, value in enumerate(row):
            maps[i, k, 1, 2] = value
    return maps


def test_pseudo_positive_rate_on_hand_built_maps():
    # peaks: image 0 (0.9, 0.2), image 1 (0.3, 0.7), image 2 (0.6, 0.1); records (1, 0), (1, 1), (0, 1).
    # record-positive pairs: (0, rib), (1, rib), (1, clav), (2, clav) -> 4; of them above 0.5: (0, rib),
    # (1, clav) -> rate 2 / 4. Pairs above 0.5 overall: 3 of 6. Record prevalence: 4 of 6.
    maps = _dp_maps([[0.9, 0.2], [0.3, 0.7], [0.6, 0.1]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    metric = PseudoPositiveRate(threshold=0.5)
    engine = _engine_with_metric(metric, "pseudo_positive_rate")
    batches = [
        {"output": {"dp_target": maps[:2], "dp_label": labels[:2]}},
        {"output": {"dp_target": maps[:0], "dp_label": labels[:0]}},
        {"output": {"dp_target": maps[2:], "dp_label": labels[2:]}},
    ]
    engine.run(batches, max_epochs=2)  # the second epoch must start from zero counts
    assert engine.state.metrics["pseudo_positive_rate"] == pytest.approx(0.5)
    assert engine.state.metrics["record_prevalence"] == pytest.approx(4 / 6)
    assert engine.state.metrics["pseudo_prevalence"] == pytest.approx(3 / 6)


def test_pseudo_positive_rate_collapse_reads_zero():
    metric = PseudoPositiveRate()
    metric.update((_dp_maps([[0.1, 0.2], [0.3, 0.05]]), torch.ones(2, 2)))
    assert metric.compute() == {"rate": 0.0, "record_prevalence": 1.0, "pseudo_prevalence": 0.0}


def test_pseudo_positive_rate_without_dp_items_is_nan():
    metric = PseudoPositiveRate()
    assert math.isnan(metric.compute()["rate"])


def test_pseudo_positive_rate_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="dp_label"):
        PseudoPositiveRate().update((torch.zeros(2, 2, 4, 4), torch.zeros(3, 2)))


# --- detections and annotations in original pixels -----------------------------------------------------


def test_output_stride_is_read_from_map_shape():
    assert output_stride_of(GEOMETRY, (16, 16)) == 4
    with pytest.raises(ValueError, match="output stride"):
        output_stride_of(GEOMETRY, (16, 12))


def test_detection_lands_at_original_pixel_of_map_peak():
    # map pixel (5, 8) at stride 4 has its centre at grid (22, 34) -> original ((22 - 0) / 0.64, (34 - 16) / 0.64).
    maps = _maps_with_peaks({(0, 0, (5, 8)): 0.9})
    detections = detect_in_original_pixels(maps[0], GEOMETRY.to_tensor(), threshold=0.05)
    assert len(detections) == 2 and detections[1].shape == (0, 3)
    np.testing.assert_allclose(detections[0], [[22 / 0.64, 18 / 0.64, 0.9]], rtol=1e-5)


def test_annotations_round_trip_through_letterbox():
    boxes = np.array([[10.0, 20.0, 30.0, 40.0, 1.0]])
    points = np.array([[55.0, 5.0, 0.0]])
    grid_boxes = GEOMETRY.boxes_to_grid(boxes)
    grid_points = points.copy()
    grid_points[:, :2] = GEOMETRY.to_grid(points[:, :2])
    back_boxes, back_points = annotations_to_original(grid_boxes, grid_points, GEOMETRY.to_tensor())
    np.testing.assert_allclose(back_boxes, boxes)
    np.testing.assert_allclose(back_points, points)
    empty_boxes, empty_points = annotations_to_original(None, None, GEOMETRY)
    assert empty_boxes.shape == (0, 5) and empty_points.shape == (0, 3)


# --- FROC ----------------------------------------------------------------------------------------------


def _froc_batch(maps: torch.Tensor, boxes: list, points: list) -> dict:
    return {
        "output": {"pred": maps},
        "boxes": [None if b is None else GEOMETRY.boxes_to_grid(np.array(b, dtype=float)) for b in boxes],
        "points": [None if p is None else np.array(p, dtype=float) for p in points],
        "geometry": torch.stack([GEOMETRY.to_tensor()] * len(maps)),
    }


def _run_froc(batch: dict) -> tuple[Engine, FROCScore]:
    metric = FROCScore(CLASSES, fp_per_image=(0.5, 1.0, 2.0), point_radius=10.0)
    engine = Engine(lambda engine, batch: batch["output"])
    metric.attach(engine, "val_froc")
    engine.run([batch], max_epochs=1)
    return engine, metric


def test_froc_perfect_detection_scores_one_and_type_without_lesions_is_left_out():
    # the peak at original (34.4, 28.1) falls inside the rib box [30, 20, 40, 35]; no clavicle lesions at all.
    maps = _maps_with_peaks({(0, 0, (5, 8)): 0.9, (1, 0, (12, 12)): 0.0}, num_items=2)
    engine, metric = _run_froc(_froc_batch(maps, [[[30, 20, 40, 35, 0]], None], [None, None]))
    assert engine.state.metrics["val_froc"] == pytest.approx(1.0)
    assert engine.state.metrics["val_froc_rib_fracture"] == pytest.approx(1.0)
    assert math.isnan(engine.state.metrics["val_froc_clavicle_fracture"])


def test_froc_missed_lesion_scores_zero():
    # the only peak lies outside the box, so the lesion is missed and the peak is a false positive.
    maps = _maps_with_peaks({(0, 0, (14, 5)): 0.9})
    engine, _ = _run_froc(_froc_batch(maps, [[[30, 20, 40, 35, 0]]], [None]))
    assert engine.state.metrics["val_froc"] == pytest.approx(0.0)


def test_froc_score_matches_froc_metric_on_original_pixels():
    # image 0: rib hit (score 0.9) + a clavicle false positive (0.6); image 1: a clavicle point lesion
    # hit within the radius (0.8) and a rib false positive (0.7).
    maps = _maps_with_peaks(
        {(0, 0, (5, 8)): 0.9, (0, 1, (13, 10)): 0.6, (1, 1, (10, 6)): 0.8, (1, 0, (2, 10)): 0.7}, num_items=2
    )
    clavicle_point = [(10.5 * 4) / 0.64, (6.5 * 4 - 16) / 0.64 + 3.0]  # 3 px from the peak
    grid_point = GEOMETRY.to_grid(np.array([clavicle_point]))[0]
    batch = _froc_batch(maps, [[[30, 20, 40, 35, 0]], None], [None, [[*grid_point, 1]]])
    engine, metric = _run_froc(batch)

    reference = FROCMetric(num_classes=2, class_names=CLASSES, fp_per_image=(0.5, 1.0, 2.0), point_radius=10.0)
    reference.update(
        [np.array([[22 / 0.64, 18 / 0.64, 0.9]]), np.array([[54 / 0.64, 26 / 0.64, 0.6]])],
        np.array([[30.0, 20.0, 40.0, 35.0, 0.0]]),
        np.zeros((0, 3)),
    )
    reference.update(
        [np.array([[10 / 0.64, 26 / 0.64, 0.7]]), np.array([[42 / 0.64, 10 / 0.64, 0.8]])],
        np.zeros((0, 5)),
        np.array([[*clavicle_point, 1.0]]),
    )
    expected = reference.compute()
    for name in CLASSES:
        assert engine.state.metrics[f"val_froc_{name}"] == pytest.approx(expected[name]["score"])
        assert metric.result[name]["score"] == pytest.approx(expected[name]["score"])
    # both types: every lesion found at the first operating point, with one false positive in two images
    assert engine.state.metrics["val_froc"] == pytest.approx(1.0)


def test_froc_requires_geometry_in_batch():
    batch = _froc_batch(_maps_with_peaks({}), [None], [None])
    del batch["geometry"]
    with pytest.raises(KeyError, match="geometry"):
        _run_froc(batch)


def test_froc_curve_writer_writes_loadable_csv(tmp_path):
    maps = _maps_with_peaks({(0, 0, (5, 8)): 0.9, (0, 0, (14, 5)): 0.4})
    metric = FROCScore(CLASSES, fp_per_image=(0.5, 1.0, 2.0))
    engine = Engine(lambda engine, batch: batch["output"])
    metric.attach(engine, "froc")
    FROCCurveWriter(metric, str(tmp_path / "eval")).attach(engine)
    engine.run([_froc_batch(maps, [[[30, 20, 40, 35, 0]]], [None])], max_epochs=1)
    with open(tmp_path / "eval" / "froc_curve.csv") as f:
        rows = list(csv.DictReader(f))
    expected = froc_curve_rows(metric.result)
    assert len(rows) == len(expected) > 0
    assert set(rows[0]) == set(expected[0])


# --- per-image predictions ------------------------------------------------------------------------------


def test_prediction_recorder_reports_probabilities_detections_and_map(tmp_path):
    maps = _maps_with_peaks({(0, 0, (5, 8)): 0.9, (0, 1, (3, 9)): 0.3})
    image = MetaTensor(torch.zeros(1, 1, 64, 64), meta={"filename_or_obj": ["/data/images/p0007_s01.png"]})
    batch = {"image": image, "geometry": GEOMETRY.to_tensor()[None]}
    recorder = FracturePredictionRecorder(CLASSES, output_dir=str(tmp_path))
    (record,) = recorder(batch, {"pred": maps})

    assert record["image"] == "/data/images/p0007_s01.png"
    assert record["rib_fracture_probability"] == pytest.approx(0.9)
    assert record["clavicle_fracture_probability"] == pytest.approx(0.3)
    rib = [d for d in record["detections"] if d["class"] == "rib_fracture"]
    assert rib == [pytest.approx({"class": "rib_fracture", "x": 22 / 0.64, "y": 18 / 0.64, "score": 0.9})]
    saved = nib.load(tmp_path / record["probability_map"])  # relative to the recorder's output folder
    assert record["probability_map"].startswith("maps/p0007_s01_")
    assert saved.shape == (100, 50, 1, 2)  # original W x H, a singleton z, one channel per type
    data = np.asarray(saved.dataobj)[:, :, 0]
    assert data.max() <= 1.0 and data[..., 0].max() > 0.1
    # the rib peak sits near original (34.4, 28.1): the resized map's maximum must be there too
    x, y = np.unravel_index(np.argmax(data[..., 0]), data.shape[:2])
    assert abs(x - 34.4) <= 4 and abs(y - 28.1) <= 4


def test_prediction_recorder_names_missing_geometry():
    image = MetaTensor(torch.zeros(1, 1, 64, 64), meta={"filename_or_obj": ["a.png"]})
    with pytest.raises(KeyError, match="geometry"):
        FracturePredictionRecorder(CLASSES)({"image": image}, {"pred": _maps_with_peaks({})})
