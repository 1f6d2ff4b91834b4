import csv
import gzip
import json

import numpy as np
import pytest
from PIL import Image

from cxrkd_monai.data.datalist import load_datalist
from cxrkd_monai.prepare import DatasetFormatError, MimicCxrAdapter, summary_path
from cxrkd_monai.prepare.labels import CHEXPERT_CLASSES
from cxrkd_monai.transforms.io import LoadCXRd

REPORT = "FINAL REPORT\n INDICATION: ___M with cough.\n\n FINDINGS: No effusion.\n\n IMPRESSION: Normal chest.\n"
LABEL_COLUMNS = list(CHEXPERT_CLASSES)
SPLITS = ("training", "validation", "test")


def write_csv(path, header, rows, gz=False):
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def study_folder(root, subject, study):
    return root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"


@pytest.fixture
def mimic(tmp_path):
    """12 subjects, one study each with a PA and a lateral image, plus one case of each kind of bad input."""
    root = tmp_path / "mimic-cxr-jpg"
    labels, metadata, splits = [], [], []
    official = ["train"] * 8 + ["validate"] * 2 + ["test"] * 2
    for index in range(12):
        subject, study = f"100000{index:02d}", f"500000{index:02d}"
        values = {c: "" for c in LABEL_COLUMNS}
        values.update({"Edema": "-1.0", "Cardiomegaly": "1.0" if index % 3 == 0 else "0.0", "Pneumonia": ""})
        labels.append([subject, study, *(values[c] for c in LABEL_COLUMNS)])
        folder = study_folder(root, subject, study)
        folder.mkdir(parents=True)
        for view, dicom_id in (("PA", f"d{index:02d}-pa"), ("LATERAL", f"d{index:02d}-lat")):
            metadata.append([dicom_id, subject, study, view])
            splits.append([dicom_id, study, subject, official[index]])
            if dicom_id != "d05-pa":  # its image file is missing
                gradient = np.tile(np.linspace(0, 255, 24, dtype=np.uint8), (32, 1))
                Image.fromarray(gradient).save(folder / f"{dicom_id}.jpg")
        if index != 3:  # its report file is missing
            text = "FINAL REPORT\n INDICATION: ___" if index == 4 else REPORT
            (folder.parent / f"s{study}.txt").write_text(text)
    metadata.append(["d01-pa", "10000001", "50000001", "PA"])  # the same image listed twice
    metadata.append(["d99-pa", "10000099", "50000099", "PA"])  # a study without labels
    labels.append(["10000042", "50000042", *([""] * len(LABEL_COLUMNS))])  # a labelled study without images
    write_csv(root / "mimic-cxr-2.0.0-chexpert.csv", ["subject_id", "study_id", *LABEL_COLUMNS], labels)
    write_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", ["dicom_id", "subject_id", "study_id", "ViewPosition"],
              metadata, gz=True)
    write_csv(root / "mimic-cxr-2.0.0-split.csv", ["dicom_id", "study_id", "subject_id", "split"], splits)
    return root


def test_mimic_datalist_labels_reports_and_skips(mimic, tmp_path):
    out = tmp_path / "lists" / "mimic.json"
    summary = MimicCxrAdapter(mimic, fractions=(0.5, 0.25, 0.25), seed=0).prepare(out)
    datalist = json.loads(out.read_text())
    items = [it for split in ("training", "validation", "test") for it in datalist[split]]
    assert datalist["class_names"] == list(CHEXPERT_CLASSES)
    assert sorted(it["patient_id"] for it in items) == [f"p100000{i:02d}" for i in (0, 1, 2, 6, 7, 8, 9, 10, 11)]
    assert summary["skipped"] == {
        "duplicate_image_id": 1,
        "image_file_missing": 1,
        "labels_missing": 1,
        "report_empty": 1,
        "report_file_missing": 1,
        "study_without_images": 1,
        "view_excluded": 12,
    }
    # Every metadata row is either written or counted (study_without_images counts a study, not an image).
    image_skips = sum(v for k, v in summary["skipped"].items() if k != "study_without_images")
    assert summary["items_written"] + image_skips == 26

    first = next(it for it in items if it["patient_id"] == "p10000000")
    edema, cardio, pneumonia = (CHEXPERT_CLASSES.index(c) for c in ("Edema", "Cardiomegaly", "Pneumonia"))
    assert (first["label"][edema], first["label_mask"][edema]) == (0.0, 1.0)  # uncertain -> 0 by default
    assert (first["label"][cardio], first["label_mask"][cardio]) == (1.0, 1.0)
    assert (first["label"][pneumonia], first["label_mask"][pneumonia]) == (0.0, 1.0)  # blank -> 0 by default
    assert datalist["blank_policy"] == "zeros"
    assert all(it["label_mask"] == [1.0] * 14 for it in items)
    # "No Finding" is blank in every row; it is derived: 1 exactly when no finding is positive.
    no_finding = CHEXPERT_CLASSES.index("No Finding")
    assert [it["label"][no_finding] for it in items] == [1.0 - it["label"][cardio] for it in items]
    assert {it["label"][no_finding] for it in items} == {0.0, 1.0}
    assert first["report"] == "FINDINGS: No effusion. IMPRESSION: Normal chest."
    assert first["image"] == "../mimic-cxr-jpg/files/p10/p10000000/s50000000/d00-pa.jpg"

    cardiomegaly = {s: summary["label_prevalence"][s]["Cardiomegaly"] for s in ("training", "validation", "test")}
    for split, stats in cardiomegaly.items():
        expected = sum(it["label"][cardio] for it in datalist[split])
        assert stats["positive"] == expected and stats["labelled"] == len(datalist[split])
    assert json.loads(summary_path(out).read_text()) == summary

    loaded = load_datalist(str(out), "training")
    assert LoadCXRd("image")(loaded[0])["image"].shape == (1, 24, 32)


def test_mimic_official_split_and_keep_policy(mimic, tmp_path):
    out = tmp_path / "mimic.json"
    summary = MimicCxrAdapter(mimic, official_split=True, empty_report="keep", uncertain_policy="ignore").prepare(out)
    datalist = json.loads(out.read_text())
    split_of = {it["patient_id"]: split for split in ("training", "validation", "test") for it in datalist[split]}
    assert split_of == {
        **{f"p100000{i:02d}": "training" for i in (0, 1, 2, 3, 4, 6, 7)},
        **{"p10000008": "validation", "p10000009": "validation", "p10000010": "test", "p10000011": "test"},
    }
    kept_empty = [it for it in datalist["training"] if it["patient_id"] in ("p10000003", "p10000004")]
    assert [it["report"] for it in kept_empty] == ["", ""]
    assert "report_empty" not in summary["skipped"] and "report_file_missing" not in summary["skipped"]
    edema = CHEXPERT_CLASSES.index("Edema")
    assert all(it["label_mask"][edema] == 0.0 for it in datalist["training"])


def test_mimic_mask_policy_masks_blanks_and_no_finding_is_not_all_positive(mimic, tmp_path):
    out = tmp_path / "mimic_mask.json"
    MimicCxrAdapter(mimic, blank_policy="mask").prepare(out)
    datalist = json.loads(out.read_text())
    assert datalist["blank_policy"] == "mask"
    items = [it for split in ("training", "validation", "test") for it in datalist[split]]
    no_finding, cardio, pneumonia = (CHEXPERT_CLASSES.index(c) for c in ("No Finding", "Cardiomegaly", "Pneumonia"))
    assert all(it["label_mask"][pneumonia] == 0.0 for it in items)
    for it in items:
        if it["label"][cardio] == 1.0:  # a positive finding rules "No Finding" out, observed
            assert (it["label"][no_finding], it["label_mask"][no_finding]) == (0.0, 1.0)
        else:  # blank findings could be positive: "No Finding" is unknown
            assert it["label_mask"][no_finding] == 0.0


def test_mimic_csv_missing_a_column_is_named(mimic, tmp_path):
    write_csv(mimic / "mimic-cxr-2.0.0-chexpert.csv", ["subject_id", "Edema"], [["10000000", "1.0"]])
    with pytest.raises(DatasetFormatError, match=r"mimic-cxr-2.0.0-chexpert.csv.*\['study_id'\]"):
        MimicCxrAdapter(mimic).prepare(tmp_path / "x.json")
    (mimic / "mimic-cxr-2.0.0-chexpert.csv").unlink()
    with pytest.raises(DatasetFormatError, match="mimic-cxr-2.0.0-chexpert.csv"):
        MimicCxrAdapter(mimic).prepare(tmp_path / "x.json")


def test_mimic_items_carry_the_view_position_and_leave_a_blank_one_out(mimic, tmp_path):
    metadata_path = mimic / "mimic-cxr-2.0.0-metadata.csv.gz"
    with gzip.open(metadata_path, "rt", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    views = {"d00-lat": "", "d01-lat": "ap axial"}  # a blank ViewPosition, and one written in lower case
    rows = [[*row[:3], views.get(row[0], row[3])] for row in rows]
    write_csv(metadata_path, header, rows, gz=True)
    out = tmp_path / "mimic.json"
    MimicCxrAdapter(mimic, views="all").prepare(out)
    datalist = json.loads(out.read_text())
    view_of = {it["image"].rsplit("/", 1)[1]: it.get("view") for split in SPLITS for it in datalist[split]}
    assert view_of["d00-lat.jpg"] is None and view_of["d01-lat.jpg"] == "AP AXIAL"
    assert view_of["d00-pa.jpg"] == "PA" and view_of["d02-lat.jpg"] == "LATERAL"
    assert {view_of[f"d{i:02d}-pa.jpg"] for i in (0, 1, 2, 6, 7)} == {"PA"}
    blank = next(it for split in SPLITS for it in datalist[split] if it["image"].endswith("d00-lat.jpg"))
    assert "view" not in blank and not any(k in blank for k in ("sex", "age", "body_part"))
