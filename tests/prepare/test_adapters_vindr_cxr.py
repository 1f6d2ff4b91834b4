import csv
import json

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cxrkd_monai.data.datalist import load_datalist
from cxrkd_monai.prepare import DatasetFormatError, VinDrCxrAdapter, fuse_reader_boxes
from cxrkd_monai.transforms.io import LoadCXRd

COLUMNS = ["image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max"]
SPLITS = ("training", "validation", "test")


def write_dicom(path, rows=48, columns=64):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", generate_uid()
    ds.Modality, ds.ViewPosition, ds.PhotometricInterpretation = "DX", "PA", "MONOCHROME2"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.tile(np.linspace(0, 4095, columns).astype(np.uint16), (rows, 1)).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_annotations(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)


TRAIN = [
    ["imgA", "R1", "Rib fracture", 10, 10, 20, 30],
    ["imgA", "R2", "Rib fracture", 12, 12, 22, 32],
    ["imgA", "R3", "No finding", "", "", "", ""],
    ["imgB", "R1", "Rib fracture", 5, 5, 15, 15],
    ["imgB", "R2", "Clavicle fracture", 30, 2, 50, 10],
    ["imgB", "R3", "Rib fracture", 40, 30, 60, 45],
    ["imgC", "R1", "No finding", "", "", "", ""],
    ["imgC", "R2", "No finding", "", "", "", ""],
    ["imgD", "R1", "Aortic enlargement", 20, 10, 40, 30],
    ["imgF", "R1", "No finding", "", "", "", ""],
]
TEST = [
    ["imgE", "R8", "Rib fracture", 1, 2, 11, 12],
    ["imgA", "R9", "No finding", "", "", "", ""],
]


@pytest.fixture
def vindr(tmp_path):
    root = tmp_path / "vindr-cxr"
    write_annotations(root / "annotations" / "annotations_train.csv", TRAIN)
    write_annotations(root / "annotations" / "annotations_test.csv", TEST)
    for image in ("imgA", "imgB", "imgC", "imgD"):
        write_dicom(root / "train" / f"{image}.dicom")
    write_dicom(root / "test" / "imgE.dicom")
    return root


def test_fuse_reader_boxes_means_overlapping_boxes_of_distinct_readers():
    fused = fuse_reader_boxes([("R1", [10, 10, 20, 30]), ("R2", [12, 12, 22, 32]), ("R1", [11, 11, 21, 31])])
    # R1's two boxes cannot share a cluster; R2's box joins the one it overlaps most (IoU 171/229 = 0.75 against
    # 144/256 = 0.56), and the cluster becomes the mean box.
    assert fused == [([10.0, 10.0, 20.0, 30.0], 1), ([11.5, 11.5, 21.5, 31.5], 2)]
    assert fuse_reader_boxes([("R1", [0, 0, 10, 10]), ("R2", [8, 8, 18, 18])], iou_threshold=0.4) == [
        ([0.0, 0.0, 10.0, 10.0], 1),
        ([8.0, 8.0, 18.0, 18.0], 1),
    ]
    assert fuse_reader_boxes([("R1", [0, 0, 10, 10]), ("R2", [1, 1, 11, 11])], min_readers=2) == [
        ([0.5, 0.5, 10.5, 10.5], 2)
    ]


def test_vindr_fracture_items_boxes_points_and_skips(vindr, tmp_path):
    out = tmp_path / "vindr.json"
    summary = VinDrCxrAdapter(vindr, official_split=True, seed=1).prepare(out)
    datalist = json.loads(out.read_text())
    items = {it["patient_id"]: (split, it) for split in SPLITS for it in datalist[split]}
    assert sorted(items) == ["imgA", "imgB", "imgC", "imgD", "imgE"]
    assert summary["skipped"] == {"duplicate_image_id": 1, "image_file_missing": 1}

    split_a, a = items["imgA"]
    assert a["boxes"] == [[11.0, 11.0, 21.0, 31.0, "rib_fracture"]]
    assert a["points"] == [[16.0, 21.0, "rib_fracture"]]
    assert a["image_label"] == [1.0, 0.0] and a["subset"] == "D_R"
    _, b = items["imgB"]
    assert b["boxes"] == [
        [5.0, 5.0, 15.0, 15.0, "rib_fracture"],
        [40.0, 30.0, 60.0, 45.0, "rib_fracture"],
        [30.0, 2.0, 50.0, 10.0, "clavicle_fracture"],
    ]
    assert b["image_label"] == [1.0, 1.0]
    assert items["imgC"][1]["subset"] == items["imgD"][1]["subset"] == "D_N"
    assert items["imgD"][1]["boxes"] == []
    assert items["imgE"][0] == "test" and split_a != "test"
    assert summary["subsets"]["test"] == {"D_R": 1, "D_P": 0, "D_N": 0}

    loaded = load_datalist(str(out), items["imgB"][0])
    image = LoadCXRd("image")(next(it for it in loaded if it["patient_id"] == "imgB"))["image"]
    assert image.shape == (1, 64, 48)
    assert all(box[2] <= 64 and box[3] <= 48 for box in b["boxes"])


def test_vindr_min_readers_drops_single_reader_boxes(vindr, tmp_path):
    summary = VinDrCxrAdapter(vindr, min_readers=2).prepare(tmp_path / "v.json")
    datalist = json.loads((tmp_path / "v.json").read_text())
    subsets = {it["patient_id"]: it["subset"] for split in SPLITS for it in datalist[split]}
    assert subsets["imgA"] == "D_R" and subsets["imgB"] == subsets["imgE"] == "D_N"
    assert summary["options"]["min_readers"] == 2


def test_vindr_bad_tables_are_named(vindr, tmp_path):
    write_annotations(vindr / "annotations" / "annotations_test.csv", [["imgE", "R8", "Rib fracture", "", 2, 11, 12]])
    with pytest.raises(DatasetFormatError, match=r"annotations_test.csv.*'Rib fracture' box of image imgE"):
        VinDrCxrAdapter(vindr).prepare(tmp_path / "v.json")
    (vindr / "annotations" / "annotations_test.csv").write_text("image_id,class_name\nimgE,No finding\n")
    with pytest.raises(DatasetFormatError, match=r"annotations_test.csv.*'rad_id'"):
        VinDrCxrAdapter(vindr).prepare(tmp_path / "v.json")
