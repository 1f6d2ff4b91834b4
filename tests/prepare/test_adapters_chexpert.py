import csv
import json

import numpy as np
import pytest
from PIL import Image

from cxrkd_monai.data import load_datalist
from cxrkd_monai.prepare import CheXpertAdapter, DatasetFormatError
from cxrkd_monai.prepare.labels import CHEXPERT_CLASSES

HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_CLASSES]
SPLITS = ("training", "validation", "test")


def demographics(path):
    """``Sex`` and ``Age`` cells of a fixture row: they cycle with the patient number; patient 2 has no age."""
    number = int(path.split("/")[1].removeprefix("patient"))
    return ("Female", "Male", "Unknown")[number % 3], "" if number == 2 else str(40 + number)


def write_table(root, name, rows):
    with open(root / name, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for path, view, labels in rows:
            values = [labels.get(c, "") for c in CHEXPERT_CLASSES]
            frontal = "Lateral" if view in ("", "LL") else "Frontal"
            writer.writerow([f"CheXpert-v1.0-small/{path}", *demographics(path), frontal, view, *values])
            image = root / path
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))).save(image)


@pytest.fixture
def chexpert(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    train = []
    for p in range(1, 21):
        train.append((f"train/patient{p:05d}/study1/view1_frontal.jpg", "AP" if p % 2 else "PA",
                      {"Edema": "-1.0", "Pleural Effusion": "1.0" if p <= 5 else "0.0"}))
        train.append((f"train/patient{p:05d}/study1/view2_lateral.jpg", "", {"Edema": "-1.0"}))
    train.append(("train/patient00001/study2/view1_frontal.jpg", "PA", {"No Finding": "1.0"}))
    write_table(root, "train.csv", train)
    valid = [(f"valid/patient{p:05d}/study1/view1_frontal.jpg", "PA", {c: "0.0" for c in CHEXPERT_CLASSES})
             for p in range(64541, 64545)]
    write_table(root, "valid.csv", valid)
    return root


def test_chexpert_pooled_split_per_patient_with_uncertain_ones(chexpert, tmp_path):
    summary = CheXpertAdapter(chexpert, uncertain_policy="ones", seed=2).prepare(tmp_path / "chexpert.json")
    datalist = json.loads((tmp_path / "chexpert.json").read_text())
    items = [it for split in SPLITS for it in datalist[split]]
    assert len(items) == 25 and summary["skipped"] == {"view_excluded": 20}
    splits_of = {}
    for split in SPLITS:
        for it in datalist[split]:
            splits_of.setdefault(it["patient_id"], set()).add(split)
    assert all(len(s) == 1 for s in splits_of.values()) and len(splits_of) == 24
    patient1 = [it for it in items if it["patient_id"] == "patient00001"]
    assert len(patient1) == 2 and all(it["report"] == "" for it in patient1)
    edema, effusion = CHEXPERT_CLASSES.index("Edema"), CHEXPERT_CLASSES.index("Pleural Effusion")
    frontal = next(it for it in patient1 if it["image"].endswith("study1/view1_frontal.jpg"))
    assert frontal["label"][edema] == 1.0 and frontal["label"][effusion] == 1.0 and sum(frontal["label"]) == 2
    assert frontal["label_mask"] == [1.0] * 14 and datalist["blank_policy"] == "zeros"  # blank -> 0 by default
    # "No Finding" is derived: 0 beside a positive finding (uncertain Edema is positive under "ones"), 1 for the
    # study the labeler called normal, and observed both ways.
    no_finding = CHEXPERT_CLASSES.index("No Finding")
    normal = next(it for it in patient1 if "study2" in it["image"])
    assert (frontal["label"][no_finding], normal["label"][no_finding]) == (0.0, 1.0)
    assert frontal["image"] == "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"
    effusion_positive = sum(summary["label_prevalence"][s]["Pleural Effusion"]["positive"] for s in SPLITS)
    assert effusion_positive == 5


def test_chexpert_official_validation_and_lateral_views(chexpert, tmp_path):
    summary = CheXpertAdapter(chexpert, official_split=True, views="PA,AP,LATERAL").prepare(tmp_path / "c.json")
    datalist = json.loads((tmp_path / "c.json").read_text())
    assert sorted(it["patient_id"] for it in datalist["validation"]) == [f"patient{p:05d}" for p in range(64541, 64545)]
    assert all(it["label_mask"] == [1.0] * 14 for it in datalist["validation"])
    assert summary["items_written"] == 45 and summary["skipped"] == {}
    train_patients = {it["patient_id"] for it in datalist["training"]} | {it["patient_id"] for it in datalist["test"]}
    assert len(train_patients) == 20 and summary["patients_per_split"]["test"] == 2


def test_chexpert_items_carry_sex_age_and_view(chexpert, tmp_path):
    CheXpertAdapter(chexpert, views="all").prepare(tmp_path / "c.json")
    datalist = json.loads((tmp_path / "c.json").read_text())
    items = {it["image"].removeprefix("CheXpert-v1.0-small/"): it for split in SPLITS for it in datalist[split]}
    assert len(items) == 45
    fields = {path: {k: it[k] for k in ("sex", "age", "view") if k in it} for path, it in items.items()}
    assert fields["train/patient00001/study1/view1_frontal.jpg"] == {"sex": "M", "age": 41, "view": "AP"}
    assert fields["train/patient00003/study1/view1_frontal.jpg"] == {"sex": "F", "age": 43, "view": "AP"}
    assert fields["train/patient00003/study1/view2_lateral.jpg"] == {"sex": "F", "age": 43, "view": "LATERAL"}
    # "Unknown" sex and a blank age are left out, not written as empty strings
    assert fields["train/patient00002/study1/view1_frontal.jpg"] == {"view": "PA"}
    assert fields["train/patient00005/study1/view1_frontal.jpg"] == {"age": 45, "view": "AP"}
    assert {f.get("view") for f in fields.values()} == {"AP", "PA", "LATERAL"}


def test_chexpert_frontal_image_without_ap_pa_is_frontal_and_a_bad_age_is_named(chexpert, tmp_path):
    write_table(chexpert, "train.csv", [("train/patient00001/study1/view1_frontal.jpg", "", {})])
    rows = (chexpert / "train.csv").read_text().replace(",Lateral,", ",Frontal,")
    (chexpert / "train.csv").write_text(rows)
    CheXpertAdapter(chexpert, views="FRONTAL").prepare(tmp_path / "c.json")
    datalist = str(tmp_path / "c.json")
    items = [it for split in SPLITS for it in load_datalist(datalist, split, subgroup_fields=True, allow_empty=True)]
    (item,) = [it for it in items if "patient00001" in it["image"]]
    assert (item["sex"], item["age"], item["view"]) == ("M", 41, "FRONTAL")
    (chexpert / "train.csv").write_text(rows.replace(",Male,41,", ",Male,forty,"))
    with pytest.raises(DatasetFormatError, match=r"train.csv.*patient00001.*age 'forty'"):
        CheXpertAdapter(chexpert, views="all").prepare(tmp_path / "c.json")


def test_chexpert_bad_values_and_columns_are_named(chexpert, tmp_path):
    (chexpert / "valid.csv").write_text("Path,Sex\nx,F\n")
    with pytest.raises(DatasetFormatError, match=r"valid.csv.*\['Frontal/Lateral', 'AP/PA'\]"):
        CheXpertAdapter(chexpert, views="all").prepare(tmp_path / "c.json")
    with open(chexpert / "train.csv", "a", newline="") as handle:
        csv.writer(handle).writerow(["CheXpert-v1.0-small/train/patient00099/study1/view1_frontal.jpg", "F", "1",
                                     "Frontal", "PA", "2.0"])
    with pytest.raises(DatasetFormatError, match=r"train.csv.*patient00099.*'No Finding' has value '2.0'"):
        CheXpertAdapter(chexpert).prepare(tmp_path / "c.json")
