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

from cxrkd_monai.handlers.fracture_prediction_recorder import FracturePredictionRecorder
from cxrkd_monai.handlers.froc_curve_writer import FROCCurveWriter
from cxrkd_monai.handlers.froc_score import FROCScore
from cxrkd_monai.handlers.pseudo_positive_rate import PseudoPositiveRate
from cxrkd_monai.metrics.froc import FROCMetric, froc_curve_rows
from cxrkd_monai.transforms.detection import (
    annotations_to_original,
    detect_in_original_pixels,
    map_pixel_half_diagonal,
    output_stride_of,
)
from cxrkd_monai.transforms.geometry import LetterboxGeometry
from cxrkd_monai.transforms.target_maps import FractureTargetMapd

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
    """(N, 2, 4, 4) maps of 0.05 with one peak per map at pixel (1, 2)."""
    maps = torch.full((len(peaks), 2, 4, 4), 0.05)
    for i, row in enumerate(peaks):
        for k, value in enumerate(row):
            maps[i, k, 1, 2] = value
    return maps


def _dp_output(target: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> dict:
    return {"output": {"dp_target": target, "dp_teacher": teacher, "dp_mask": mask}}


def test_pseudo_positive_rate_raised_fraction_and_area_on_hand_built_maps():
    # targets: peaks image 0 (0.9, 0.2), image 1 (0.3, 0.7), image 2 (0.6, 0.1); D_P maps (mask): (0, rib),
    # (1, rib), (1, clav), (2, clav) -> 4 maps of 16 pixels. Peaks above 0.5: (0, rib), (1, clav) -> rate 2/4.
    # Pixels above 0.5: those two peaks -> 2/64. The teacher equals the target except at the peak of
    # (0, rib) (teacher 0.6) and of the masked-out (2, rib) -> raised 1/64.
    target = _dp_maps([[0.9, 0.2], [0.3, 0.7], [0.6, 0.1]])
    teacher = target.clone()
    teacher[0, 0, 1, 2] = 0.6
    teacher[2, 0, 1, 2] = 0.3
    mask = torch.tensor([[True, False], [True, True], [False, True]])
    metric = PseudoPositiveRate(threshold=0.5)
    engine = _engine_with_metric(metric, "pseudo_positive_rate")
    batches = [
        _dp_output(target[:2], teacher[:2], mask[:2]),
        _dp_output(target[:0], teacher[:0], mask[:0]),
        _dp_output(target[2:], teacher[2:], mask[2:]),
    ]
    engine.run(batches, max_epochs=2)  # the second epoch must start from zero counts
    assert engine.state.metrics["pseudo_positive_rate"] == pytest.approx(2 / 4)
    assert engine.state.metrics["dp_raised_fraction"] == pytest.approx(1 / 64)
    assert engine.state.metrics["dp_positive_area"] == pytest.approx(2 / 64)


def test_pseudo_positive_rate_collapse_reads_zero_and_runaway_reads_whole_area():
    metric = PseudoPositiveRate()
    collapsed = _dp_maps([[0.1, 0.2], [0.3, 0.05]])
    metric.update((collapsed, collapsed, torch.ones(2, 2, dtype=torch.bool)))
    assert metric.compute() == {"rate": 0.0, "raised_fraction": 0.0, "positive_area": 0.0}
    metric.reset()
    metric.update((torch.full((1, 2, 4, 4), 0.99), torch.full((1, 2, 4, 4), 0.6), torch.ones(1, 2, dtype=torch.bool)))
    assert metric.compute() == {"rate": 1.0, "raised_fraction": 1.0, "positive_area": 1.0}


def test_pseudo_positive_rate_without_dp_maps_is_nan():
    metric = PseudoPositiveRate()
    metric.update((_dp_maps([[0.9, 0.9]]), _dp_maps([[0.9, 0.9]]), torch.zeros(1, 2, dtype=torch.bool)))
    assert all(math.isnan(value) for value in metric.compute().values())


def test_pseudo_positive_rate_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="dp_mask"):
        PseudoPositiveRate().update((torch.zeros(2, 2, 4, 4), torch.zeros(2, 2, 4, 4), torch.zeros(3, 2)))


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


def test_peak_in_the_letterbox_padding_is_no_detection():
    # The 100 x 50 image fills grid rows y in [16, 48); map pixel (5, 1) has its centre at grid y = 6, in the
    # padding above the image (original y = (6 - 16) / 0.64 < 0), map pixel (5, 14) at y = 58, below it.
    maps = _maps_with_peaks({(0, 0, (5, 1)): 0.8, (0, 0, (5, 14)): 0.7, (0, 0, (5, 8)): 0.9})
    detections = detect_in_original_pixels(maps[0], GEOMETRY.to_tensor(), threshold=0.05)
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


@pytest.mark.parametrize("stride", [4, 8])
def test_froc_counts_perfectly_placed_detections_on_a_full_size_radiograph(stride):
    """A 3000 x 2500 radiograph on a 512 grid: a map pixel spans 23 (stride 4) or 47 (stride 8) original pixels.

    The maps are the rendered targets themselves, a perfect detector: each lesion peaks on the map pixel
    that contains it. Points (radius 10 px) and 12 px boxes are smaller than a map pixel, so a peak at the
    pixel centre lies outside them in most cases; every lesion must still count as found.
    """
    geometry = LetterboxGeometry.fit((3000, 2500), (512, 512))
    rng = np.random.default_rng(0)
    num_items = 24
    rib_points = np.column_stack([rng.uniform(100, 2900, num_items), rng.uniform(100, 2400, num_items)])
    clavicle_corners = np.column_stack([rng.uniform(100, 2880, num_items), rng.uniform(100, 2380, num_items)])
    render = FractureTargetMapd(num_classes=2, output_stride=stride)
    maps, boxes, points = [], [], []
    for rib, corner in zip(rib_points, clavicle_corners):
        item_points = np.array([[*geometry.to_grid(rib), 0.0]])
        item_boxes = np.array([[*geometry.boxes_to_grid(np.array([[*corner, *(corner + 12.0)]]))[0], 1.0]])
        maps.append(render({"image": torch.zeros(1, 512, 512), "points": item_points, "boxes": item_boxes})["target"])
        boxes.append(item_boxes)
        points.append(item_points)
    batch = {
        "output": {"pred": torch.stack(maps)},
        "boxes": boxes,
        "points": points,
        "geometry": torch.stack([geometry.to_tensor()] * num_items),
    }
    metric = FROCScore(CLASSES, fp_per_image=(0.125, 0.25, 0.5, 1.0), point_radius=10.0)
    engine = Engine(lambda engine, batch: batch["output"])
    metric.attach(engine, "val_froc")
    engine.run([batch], max_epochs=1)
    for name in CLASSES:
        assert metric.result[name]["num_lesions"] == num_items
        assert metric.result[name]["score"] == 1.0
        assert metric.result[name]["fps_per_image"].max() == 0.0
    # resized to 512 x 427: the two axes' scales differ slightly by rounding
    half_diagonal = 0.5 * stride * math.hypot(3000 / 512, 2500 / 427)
    assert map_pixel_half_diagonal(geometry, (512 // stride, 512 // stride)) == pytest.approx(half_diagonal)


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


def test_prediction_recorder_writes_a_one_type_map_with_its_channel_axis(tmp_path):
    """One fracture type (the FracAtlas set-up): the map keeps its singleton z and channel axes, ``(W, H, 1, 1)``."""
    maps = _maps_with_peaks({(0, 0, (5, 8)): 0.9})[:, :1]
    image = MetaTensor(torch.zeros(1, 1, 64, 64), meta={"filename_or_obj": ["/data/images/p0007_s01.png"]})
    recorder = FracturePredictionRecorder(["fracture"], output_dir=str(tmp_path))
    (record,) = recorder({"image": image, "geometry": GEOMETRY.to_tensor()[None]}, {"pred": maps})

    assert record["fracture_probability"] == pytest.approx(0.9)
    assert record["detections"] == [pytest.approx({"class": "fracture", "x": 22 / 0.64, "y": 18 / 0.64, "score": 0.9})]
    saved = np.asarray(nib.load(tmp_path / record["probability_map"]).dataobj)
    assert saved.shape == (100, 50, 1, 1)
    # map pixel (5, 8) covers original x in [20 / 0.64, 24 / 0.64) = [31.25, 37.5), y in [25, 31.25)
    x, y = np.unravel_index(np.argmax(saved[:, :, 0, 0]), (100, 50))
    assert 31 <= x <= 37 and 25 <= y <= 31


def test_prediction_recorder_turns_an_image_it_cannot_record_into_a_failure_record(tmp_path):
    """The second image's geometry does not match the map (a 60 px grid is no multiple of the 16 px map): it gets
    a failure record with the reason, the first its prediction."""
    maps = _maps_with_peaks({(0, 0, (5, 8)): 0.9, (1, 0, (5, 8)): 0.9}, num_items=2)
    names = ["/data/images/a.png", "/data/images/b.png"]
    image = MetaTensor(torch.zeros(2, 1, 64, 64), meta={"filename_or_obj": names})
    geometry = torch.stack([GEOMETRY.to_tensor(), LetterboxGeometry.fit((100, 50), (60, 60)).to_tensor()])
    recorder = FracturePredictionRecorder(CLASSES, output_dir=str(tmp_path))
    good, failed = recorder({"image": image, "geometry": geometry}, {"pred": maps})

    assert good["image"] == names[0] and good["rib_fracture_probability"] == pytest.approx(0.9)
    assert (tmp_path / good["probability_map"]).is_file()
    assert failed == {"image": names[1], "failure": failed["failure"]}
    assert failed["failure"].startswith("ValueError: Probability map of spatial shape (16, 16) does not tile")
    assert len(list((tmp_path / "maps").iterdir())) == 1
