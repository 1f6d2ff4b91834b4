import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrkd_monai.data import load_datalist
from cxrkd_monai.prepare import DatasetFormatError, FracAtlasAdapter, get_adapter
from cxrkd_monai.prepare.fracatlas import group_consecutive_studies
from cxrkd_monai.transforms import LoadCXRd
from cxrkd_monai.transforms.fracture_annotations import EncodeFractureAnnotationsd

FRACATLAS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fracatlas_dev"
SPLITS = ("training", "validation", "test")
LABEL_HEADER = [
    "image_id", "hand", "leg", "hip", "shoulder", "mixed", "hardware", "multiscan", "fractured", "fracture_count",
    "frontal", "lateral", "oblique", "image", "orig_width", "orig_height", "width", "height", "scale",
]  # fmt: skip


def _write_fracatlas(root: Path, rows: list[dict], boxes: list[list]) -> Path:
    (root / "images").mkdir(parents=True)
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LABEL_HEADER)
        writer.writeheader()
        for row in rows:
            full = {key: 0 for key in LABEL_HEADER} | {"width": 64, "height": 48, "orig_width": 640,
                                                        "orig_height": 480, "scale": 0.1, "frontal": 1} | row
            full["image"] = f"images/{full['image_id']}"
            writer.writerow(full)
            Image.fromarray(np.zeros((48, 64), dtype=np.uint8)).save(root / full["image"])
    with open(root / "boxes.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "x_min", "y_min", "x_max", "y_max", "label"])
        writer.writerows(boxes)
    return root


def test_consecutive_images_of_one_study_form_a_group():
    images = [(59, ("hand",)), (58, ("hand",)), (60, ("leg",)), (62, ("leg",)), (61, ("leg",)), (7, ("hand",))]
    assert group_consecutive_studies(images) == [1, 1, 2, 2, 2, 0]


def test_training_positives_split_into_dr_and_dp_and_types_map_to_fracture_class(tmp_path):
    rows = [{"image_id": f"IMG{n:07d}.jpg", "hand": 1, "fractured": int(n < 20), "fracture_count": int(n < 20)}
            for n in range(0, 80, 2)]  # every image its own study
    boxes = [[f"images/IMG{n:07d}.jpg", 10, 5, 30, 25, "fracture"] for n in range(0, 20, 2)]
    root = _write_fracatlas(tmp_path / "fa", rows, boxes)
    adapter = FracAtlasAdapter(root, class_names="rib_fracture,clavicle_fracture", fracture_class="clavicle_fracture",
                               annotated_fraction=0.5, fractions=(0.6, 0.2, 0.2), seed=3)
    summary = adapter.prepare(tmp_path / "datalist.json")
    datalist = json.loads((tmp_path / "datalist.json").read_text())
    assert datalist["class_names"] == ["rib_fracture", "clavicle_fracture"]
    training_positive = [it for it in datalist["training"] if it["image_label"][1] == 1.0]
    assert len(training_positive) == 6  # round(0.6 * 10) positive studies
    assert sorted(it["subset"] for it in training_positive) == ["D_P"] * 3 + ["D_R"] * 3
    for item in training_positive:
        assert bool(item["boxes"]) == (item["subset"] == "D_R") and bool(item["points"]) == bool(item["boxes"])
    dr = next(it for it in training_positive if it["subset"] == "D_R")
    assert dr["boxes"] == [[10.0, 5.0, 30.0, 25.0, "clavicle_fracture"]]
    assert dr["points"] == [[20.0, 15.0, "clavicle_fracture"]]
    held_out = [it for split in ("validation", "test") for it in datalist[split]]
    assert {it["subset"] for it in held_out if it["image_label"][1]} == {"D_R"}
    assert all(it["image_label"][0] == 0.0 for split in SPLITS for it in datalist[split])
    assert summary["subsets"]["training"] == {"D_R": 3, "D_P": 3, "D_N": 18}
    assert get_adapter("fracatlas") is FracAtlasAdapter


def test_items_carry_flagged_body_parts_and_projections(tmp_path):
    rows = [
        {"image_id": "IMG0000001.jpg", "hand": 1, "shoulder": 1, "mixed": 1, "frontal": 1, "lateral": 1},
        {"image_id": "IMG0000005.jpg", "leg": 1, "frontal": 0, "oblique": 1},
        {"image_id": "IMG0000009.jpg", "hip": 1, "frontal": 0},
    ]
    root = _write_fracatlas(tmp_path / "fa", rows, [])
    FracAtlasAdapter(root, fractions=(1.0, 0.0, 0.0)).prepare(tmp_path / "d.json")
    items = json.loads((tmp_path / "d.json").read_text())["training"]
    fields = {it["patient_id"]: {k: it[k] for k in ("view", "body_part") if k in it} for it in items}
    assert fields == {
        "IMG0000001": {"view": "FRONTAL+LATERAL", "body_part": "hand+shoulder"},
        "IMG0000005": {"view": "OBLIQUE", "body_part": "leg"},
        "IMG0000009": {"body_part": "hip"},
    }


def test_flag_box_conflicts_are_counted_and_bad_boxes_named(tmp_path):
    rows = [{"image_id": "IMG0000001.jpg", "fractured": 0, "fracture_count": 1},
            {"image_id": "IMG0000003.jpg"}]
    root = _write_fracatlas(tmp_path / "fa", rows, [["images/IMG0000001.jpg", 1, 1, 9, 9, "fracture"]])
    summary = FracAtlasAdapter(root, fractions=(1.0, 0.0, 0.0)).prepare(tmp_path / "d.json")
    assert summary["label_conflicts"] == 1
    assert summary["subsets"]["training"] == {"D_R": 0, "D_P": 1, "D_N": 1}
    items = json.loads((tmp_path / "d.json").read_text())["training"]
    assert [it["view"] for it in items] == ["FRONTAL", "FRONTAL"]
    assert not any("body_part" in it for it in items)  # no body-part flag: the field is left out
    (root / "boxes.csv").write_text("image,x_min,y_min,x_max,y_max,label\nimages/IMG0000001.jpg,1,1,90,9,fracture\n")
    with pytest.raises(DatasetFormatError, match=r"boxes.csv.*IMG0000001.jpg.*outside"):
        FracAtlasAdapter(root).prepare(tmp_path / "d.json")


def test_real_fracatlas_datalist(tmp_path):
    if not (FRACATLAS / "labels.csv").is_file():
        pytest.skip(f"FracAtlas development copy not found at {FRACATLAS}")
    out = tmp_path / "fracatlas" / "datalist_fracture.json"
    summary = FracAtlasAdapter(FRACATLAS, annotated_fraction=0.3, seed=0).prepare(out)
    datalist = json.loads(out.read_text())
    items = {split: load_datalist(str(out), split, subgroup_fields=True) for split in SPLITS}
    # counts of SOURCE.md: 1,445 images, 444 fractured, 578 boxes; the one image flagged unfractured but boxed
    # counts as positive
    assert sum(len(v) for v in items.values()) == summary["items_written"] == 1445 and summary["skipped"] == {}
    everything = [it for split in SPLITS for it in items[split]]
    assert sum(it["image_label"][0] for it in everything) == 445 and summary["label_conflicts"] == 1
    with open(FRACATLAS / "boxes.csv") as f:
        boxes_per_image = Counter(Path(row["image"]).name for row in csv.DictReader(f))
    assert sum(boxes_per_image.values()) == 578
    for item in everything:  # an item keeps all its boxes (D_R, D_N) or none (D_P)
        expected = 0 if item["subset"] == "D_P" else boxes_per_image[Path(item["image"]).name]
        assert len(item["boxes"]) == len(item["points"]) == expected
    # disjoint splits, over images and over study groups
    for key in ("image", "patient_id"):
        sets = [{it[key] for it in items[split]} for split in SPLITS]
        assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    # D_R is the annotated fraction of the training positives; held-out positives keep every box
    training_positive = [it for it in items["training"] if it["image_label"][0]]
    dr = [it for it in training_positive if it["subset"] == "D_R"]
    assert len(dr) == round(0.3 * len(training_positive))
    assert {it["subset"] for split in ("validation", "test") for it in items[split] if it["image_label"][0]} == {"D_R"}
    assert {it["subset"] for it in everything if not it["image_label"][0]} == {"D_N"}
    # body-part and view counts of SOURCE.md (an image may have several of each)
    body_parts = Counter(part for it in everything for part in it["body_part"].split("+"))
    views = Counter(view for it in everything for view in it["view"].split("+"))
    assert body_parts == {"hand": 594, "leg": 754, "hip": 129, "shoulder": 139}
    assert views == {"FRONTAL": 923, "LATERAL": 531, "OBLIQUE": 109}
    for split in ("validation", "test"):
        assert 0.2 < np.mean([it["image_label"][0] for it in items[split]]) < 0.45  # stratified by fracture
    # every item passes the bundle's loading and annotation checks (boxes inside the image, known classes)
    load = LoadCXRd(keys="image")
    encode = EncodeFractureAnnotationsd(class_names=datalist["class_names"])
    for item in everything:
        encoded = encode(load(item))
        width, height = encoded["image"].shape[1:]
        assert np.all(encoded["boxes"][:, [0, 2]] <= width) and np.all(encoded["boxes"][:, [1, 3]] <= height)
        assert np.all(encoded["boxes"][:, :4] >= 0)
