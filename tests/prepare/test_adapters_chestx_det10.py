import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrkd_monai.prepare import ChestXDet10Adapter, DatasetFormatError

DET10 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "chestx_det10_annotations"
SPLITS = ("training", "validation", "test")

TRAIN = [
    {"file_name": "00000001_000.png", "syms": ["Fracture", "Effusion", "Fracture"],
     "boxes": [[10, 20, 30, 50], [0, 0, 5, 5], [40, 40, 60, 62]]},
    {"file_name": "00000001_001.png", "syms": [], "boxes": []},
    {"file_name": "00000002_000.png", "syms": ["Nodule"], "boxes": [[1, 1, 4, 4]]},
]
TEST = [{"file_name": "00000001_002.png", "syms": ["Fracture"], "boxes": [[2, 2, 12, 22]]},
        {"file_name": "36237.png", "syms": [], "boxes": []}]


@pytest.fixture
def det10(tmp_path):
    root = tmp_path / "ChestX-Det10-Dataset"
    for name, folder, entries in (("train.json", "train_data", TRAIN), ("test.json", "test_data", TEST)):
        (root / folder).mkdir(parents=True)
        (root / name).write_text(json.dumps(entries))
        for entry in entries:
            gradient = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
            Image.fromarray(gradient).save(root / folder / entry["file_name"])
    return root


def test_det10_fracture_boxes_map_to_rib_and_patients_come_from_nih_names(det10, tmp_path):
    summary = ChestXDet10Adapter(det10, fractions=(1.0, 0.0, 0.0)).prepare(tmp_path / "det10.json")
    datalist = json.loads((tmp_path / "det10.json").read_text())
    items = {Path(it["image"]).name: it for it in datalist["training"]}
    first = items["00000001_000.png"]
    assert first["image"] == "ChestX-Det10-Dataset/train_data/00000001_000.png"
    assert first["boxes"] == [[10.0, 20.0, 30.0, 50.0, "rib_fracture"], [40.0, 40.0, 60.0, 62.0, "rib_fracture"]]
    assert first["points"] == [[20.0, 35.0, "rib_fracture"], [50.0, 51.0, "rib_fracture"]]
    assert first["image_label"] == [1.0, 0.0] and first["subset"] == "D_R"
    assert items["00000002_000.png"]["subset"] == items["00000001_001.png"]["subset"] == "D_N"
    assert {it["patient_id"] for it in items.values()} == {"00000001", "00000002", "36237"}
    assert summary["items_written"] == 5 and summary["skipped"] == {}
    assert summary["label_prevalence"]["training"]["rib_fracture"] == {"positive": 2, "labelled": 5, "prevalence": 0.4}


def test_det10_official_split_drops_training_images_of_test_patients(det10, tmp_path):
    summary = ChestXDet10Adapter(det10, official_split=True, fracture_class="clavicle_fracture").prepare(
        tmp_path / "det10.json"
    )
    datalist = json.loads((tmp_path / "det10.json").read_text())
    assert sorted(Path(it["image"]).name for it in datalist["test"]) == ["00000001_002.png", "36237.png"]
    assert datalist["test"][0]["image_label"] == [0.0, 1.0]
    assert summary["skipped"] == {"patient_in_other_official_split": 2}
    assert [Path(it["image"]).name for split in ("training", "validation") for it in datalist[split]] == [
        "00000002_000.png"
    ]


def test_det10_bad_json_is_named(det10, tmp_path):
    (det10 / "test.json").write_text(json.dumps([{"file_name": "x.png", "syms": ["Fracture"], "boxes": []}]))
    with pytest.raises(DatasetFormatError, match=r"test.json.*'x.png' has 1 syms for 0 boxes"):
        ChestXDet10Adapter(det10).prepare(tmp_path / "d.json")
    (det10 / "test.json").write_text("[{")
    with pytest.raises(DatasetFormatError, match=r"test.json.*not valid JSON"):
        ChestXDet10Adapter(det10).prepare(tmp_path / "d.json")


def test_det10_real_annotations_match_the_fracture_only_extract(tmp_path):
    if not DET10.is_dir():
        pytest.skip(f"ChestX-Det10 annotations not found at {DET10}")
    root = tmp_path / "det10"
    root.mkdir()
    shutil.copy(DET10 / "train_nih_names.json", root / "train.json")
    shutil.copy(DET10 / "test_nih_names.json", root / "test.json")
    summary = ChestXDet10Adapter(root, check_images=False, official_split=True).prepare(tmp_path / "d.json")
    datalist = json.loads((tmp_path / "d.json").read_text())
    fracture_only = json.loads((DET10 / "fracture_only.json").read_text())
    test_names = {e["file_name"] for e in fracture_only if e["split"] == "test"}
    assert {Path(it["image"]).name for it in datalist["test"] if it["subset"] == "D_R"} == test_names
    assert summary["subsets"]["test"]["D_R"] == 76
    # Training images of the 271 patients shared with the test file are dropped and counted.
    kept = summary["items_written"] + summary["skipped"]["patient_in_other_official_split"]
    assert kept == 3001 + 542
    written_boxes = {
        Path(it["image"]).name: len(it["boxes"]) for split in SPLITS for it in datalist[split] if it["boxes"]
    }
    for entry in fracture_only:
        if entry["file_name"] in written_boxes:
            assert written_boxes[entry["file_name"]] == len(entry["boxes"])
    patients = [{it["patient_id"] for it in datalist[split]} for split in SPLITS]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
