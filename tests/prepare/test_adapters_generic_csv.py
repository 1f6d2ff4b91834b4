import csv
import json
import logging

import numpy as np
import pytest
from PIL import Image

from cxrkd_monai.prepare import DatasetFormatError, GenericCsvAdapter, GenericFractureCsvAdapter

SPLITS = ("training", "validation", "test")


def write_rows(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def save_png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))).save(path)


@pytest.fixture
def hospital(tmp_path):
    root = tmp_path / "hospital"
    for name in ("a1.png", "a2.png", "b1.png", "c1.png", "d1.png", "e1.png"):
        save_png(root / "img" / name)
    return root


def test_generic_classification_csv(hospital, tmp_path, caplog):
    write_rows(
        hospital / "labels.csv",
        ["image", "patient_id", "view", "split", "report", "Pneumothorax", "Edema"],
        [
            ["img/a1.png", "A", "PA", "test", "FINDINGS: Small left pneumothorax.", "1", ""],
            ["img/a2.png", "A", "LL", "", "FINDINGS: Lateral.", "1", ""],
            ["img/b1.png", "B", "AP", "", "IMPRESSION: ___ clear.", "0", "-1"],
            ["img/c1.png", "C", "PA", "", "", "0", "0"],
            ["", "D", "PA", "", "x", "0", "0"],
            ["img/d1.png", "", "PA", "", "x", "0", "0"],
            ["img/missing.png", "E", "PA", "", "Clear.", "0", "0"],
            ["img/b1.png", "B", "AP", "", "IMPRESSION: clear.", "0", "0"],
        ],
    )
    caplog.set_level(logging.WARNING)
    adapter = GenericCsvAdapter(hospital, class_names=["Pneumothorax", "Edema", "Fracture"], official_split=True)
    summary = adapter.prepare(tmp_path / "h.json")
    datalist = json.loads((tmp_path / "h.json").read_text())
    assert [it["patient_id"] for it in datalist["test"]] == ["A"]
    assert datalist["test"][0]["report"] == "FINDINGS: Small left pneumothorax."
    assert datalist["test"][0]["label"] == [1.0, 0.0, 0.0] and datalist["test"][0]["label_mask"] == [1.0, 0.0, 0.0]
    assert datalist["blank_policy"] == "mask"  # a hospital's blank cell is unknown unless the user says otherwise
    rest = [it for split in ("training", "validation") for it in datalist[split]]
    assert [it["patient_id"] for it in rest] == ["B"]
    assert rest[0]["report"] == "IMPRESSION: clear." and rest[0]["label_mask"] == [1.0, 1.0, 0.0]
    assert summary["skipped"] == {
        "duplicate_image_id": 1,
        "image_file_missing": 1,
        "image_path_empty": 1,
        "patient_id_empty": 1,
        "report_empty": 1,
        "view_excluded": 1,
    }
    assert summary["items_written"] + sum(summary["skipped"].values()) == 8
    assert summary["options"]["classes_without_column"] == ["Fracture"]
    assert "Fracture" in caplog.text


def test_generic_fracture_csv_subsets_boxes_and_points(hospital, tmp_path):
    write_rows(
        hospital / "fractures.csv",
        ["image", "patient_id", "rib_fracture", "clavicle_fracture", "boxes", "points"],
        [
            ["img/a1.png", "A", "1", "0", json.dumps([[1, 2, 10, 12, "rib_fracture"]]), ""],
            ["img/b1.png", "B", "0", "0", "", json.dumps([[5, 6, "clavicle_fracture"]])],
            ["img/c1.png", "C", "1", "0", "", ""],
            ["img/e1.png", "E", "0", "0", "", ""],
        ],
    )
    summary = GenericFractureCsvAdapter(hospital, csv_file="fractures.csv", seed=0).prepare(tmp_path / "f.json")
    datalist = json.loads((tmp_path / "f.json").read_text())
    items = {it["patient_id"]: it for split in SPLITS for it in datalist[split]}
    assert items["A"]["boxes"] == [[1.0, 2.0, 10.0, 12.0, "rib_fracture"]] and items["A"]["subset"] == "D_R"
    assert items["B"]["image_label"] == [0.0, 1.0] and items["B"]["subset"] == "D_R"
    assert items["C"]["subset"] == "D_P" and items["C"] in datalist["training"]
    assert items["E"]["subset"] == "D_N"
    assert sum(summary["subsets"][s]["D_P"] for s in SPLITS) == 1


def test_generic_csv_errors_name_file_line_and_column(hospital, tmp_path):
    write_rows(hospital / "labels.csv", ["path", "patient_id"], [["img/a1.png", "A"]])
    with pytest.raises(DatasetFormatError, match=r"labels.csv.*\['image'\]"):
        GenericCsvAdapter(hospital).prepare(tmp_path / "x.json")
    write_rows(hospital / "labels.csv", ["image", "patient_id", "Edema"], [["img/a1.png", "A", "maybe"]])
    with pytest.raises(DatasetFormatError, match=r"labels.csv' line 2: Label 'Edema' has value 'maybe'"):
        GenericCsvAdapter(hospital).prepare(tmp_path / "x.json")
    write_rows(hospital / "f.csv", ["image", "patient_id", "rib_fracture", "clavicle_fracture", "boxes"],
               [["img/a1.png", "A", "1", "0", "[[1, 2, 3, 'rib']]"]])
    with pytest.raises(DatasetFormatError, match=r"f.csv' line 2: boxes .* is not a JSON list"):
        GenericFractureCsvAdapter(hospital, csv_file="f.csv").prepare(tmp_path / "x.json")
    write_rows(hospital / "f.csv", ["image", "patient_id", "rib_fracture"], [["img/a1.png", "A", "1"]])
    with pytest.raises(DatasetFormatError, match=r"f.csv.*\['clavicle_fracture'\]"):
        GenericFractureCsvAdapter(hospital, csv_file="f.csv").prepare(tmp_path / "x.json")


def test_generic_csv_subgroup_columns_are_normalised_and_blanks_left_out(hospital, tmp_path):
    write_rows(
        hospital / "labels.csv",
        ["image", "patient_id", "view", "Sex", "age", "body_part", "Edema"],
        [
            ["img/a1.png", "A", "pa", "female", "063Y", "Chest", "1"],
            ["img/b1.png", "B", "AP", "M", "71.5", "", "0"],
            ["img/c1.png", "C", "", "Unknown", "", "chest", "0"],
        ],
    )
    adapter = GenericCsvAdapter(hospital, class_names=["Edema"], views="all", sex_column="Sex")
    adapter.prepare(tmp_path / "h.json")
    datalist = json.loads((tmp_path / "h.json").read_text())
    fields = {
        it["patient_id"]: {k: it[k] for k in ("sex", "age", "view", "body_part") if k in it}
        for split in SPLITS
        for it in datalist[split]
    }
    assert fields == {
        "A": {"sex": "F", "age": 63, "view": "PA", "body_part": "chest"},
        "B": {"sex": "M", "age": 71.5, "view": "AP"},
        "C": {"body_part": "chest"},
    }
    write_rows(
        hospital / "f.csv",
        ["image", "patient_id", "rib_fracture", "clavicle_fracture", "sex", "age"],
        [["img/a1.png", "A", "1", "0", "M", "40"], ["img/b1.png", "B", "0", "0", "X", "50"]],
    )
    with pytest.raises(DatasetFormatError, match=r"f.csv' line 3: sex 'X'"):
        GenericFractureCsvAdapter(hospital, csv_file="f.csv").prepare(tmp_path / "f.json")
    write_rows(
        hospital / "f.csv",
        ["image", "patient_id", "rib_fracture", "clavicle_fracture", "sex", "age"],
        [["img/a1.png", "A", "1", "0", "M", "40"], ["img/b1.png", "B", "0", "0", "", "about 50"]],
    )
    with pytest.raises(DatasetFormatError, match=r"f.csv' line 3: age 'about 50'"):
        GenericFractureCsvAdapter(hospital, csv_file="f.csv").prepare(tmp_path / "f.json")
    write_rows(
        hospital / "f.csv",
        ["image", "patient_id", "rib_fracture", "clavicle_fracture", "sex", "age"],
        [["img/a1.png", "A", "1", "0", "M", "40"]],
    )
    GenericFractureCsvAdapter(hospital, csv_file="f.csv").prepare(tmp_path / "f.json")
    (item,) = [it for split in SPLITS for it in json.loads((tmp_path / "f.json").read_text())[split]]
    assert (item["sex"], item["age"], item["patient_id"]) == ("M", 40, "A") and "view" not in item
