import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrkd_monai.prepare import DatasetFormatError, OpenIAdapter, OpenIFractureAdapter
from cxrkd_monai.prepare.labels import CHEXPERT_CLASSES

IU = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "iu_xray_reports_text"
SPLITS = ("training", "validation", "test")

STUDIES = {
    # uid: (MeSH entries, findings, impression, [(image id, projection)])
    "1": (["normal"], "The lungs are clear.", "Normal chest x-XXXX.", [("1_IM-0001-4001", "Frontal"),
                                                                       ("1_IM-0001-3001", "Lateral")]),
    "2": (["Cardiomegaly/borderline", "Fractures, Bone/ribs/left/healed"], "Borderline cardiomegaly.",
          "Old left rib fracture.", [("2_IM-0652-1001", "Frontal")]),
    "3": (["Fractures, Bone/clavicle/right"], "Right clavicle fracture.", "", [("3_IM-1384-1001", "Frontal")]),
    "4": (["Fractures, Bone/thoracic vertebrae", "Catheters, Indwelling"], "", "Vertebral fracture.",
          [("4_IM-2050-1001", "Frontal")]),
    "5": (["Fractures, Bone"], "Fracture.", "", [("5_IM-2117-1001", "Frontal")]),
    "6": (["Opacity/lung/base"], "", "", [("6_IM-2192-1001", "Frontal")]),  # empty report
    "7": (["No Indexing"], "XXXX.", "XXXX.", [("7_IM-2263-1001", "Frontal")]),
    "8": (["normal"], "Clear.", "Normal.", []),  # a study without images
}


def save_png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))).save(path)


def write_projections(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["uid", "filename", "projection"])
        writer.writerows(rows)


@pytest.fixture
def openi_xml(tmp_path):
    """The original release: ecgen-radiology/*.xml, NLMCXR_png/, plus a projections CSV."""
    root = tmp_path / "openi"
    (root / "ecgen-radiology").mkdir(parents=True)
    projections = []
    for uid, (mesh, findings, impression, images) in STUDIES.items():
        major = "".join(f"<major>{m}</major>" for m in mesh)
        parents = "".join(f'<parentImage id="CXR{i}"><figureId>F1</figureId></parentImage>' for i, _ in images)
        (root / "ecgen-radiology" / f"{uid}.xml").write_text(
            f'<?xml version="1.0" encoding="utf-8"?><eCitation><uId id="CXR{uid}"/>'
            f"<MedlineCitation><Article><Abstract>"
            f'<AbstractText Label="COMPARISON">None.</AbstractText>'
            f'<AbstractText Label="FINDINGS">{findings}</AbstractText>'
            f'<AbstractText Label="IMPRESSION">{impression}</AbstractText>'
            f"</Abstract></Article></MedlineCitation><MeSH>{major}</MeSH>{parents}</eCitation>"
        )
        for image_id, projection in images:
            save_png(root / "NLMCXR_png" / f"CXR{image_id}.png")
            projections.append([uid, f"{image_id}.dcm.png", projection])
    save_png(root / "NLMCXR_png" / "CXR9_IM-9999-1001.png")  # an image whose report file is missing
    write_projections(tmp_path / "indiana_projections.csv", projections)
    return root


def all_items(out):
    datalist = json.loads(Path(out).read_text())
    return datalist, [it for split in SPLITS for it in datalist[split]]


def test_openi_xml_labels_from_mesh_reports_and_skips(openi_xml, tmp_path):
    adapter = OpenIAdapter(openi_xml, projections=openi_xml.parent / "indiana_projections.csv")
    summary = adapter.prepare(tmp_path / "openi.json")
    _, items = all_items(tmp_path / "openi.json")
    by_patient = {it["patient_id"]: it for it in items}
    assert sorted(by_patient) == ["CXR1", "CXR2", "CXR3", "CXR4", "CXR5"]
    assert summary["skipped"] == {
        "mesh_not_indexed": 1,
        "report_empty": 1,
        "report_file_missing": 1,
        "study_without_images": 1,
        "view_excluded": 1,
    }
    index = {name: CHEXPERT_CLASSES.index(name) for name in CHEXPERT_CLASSES}
    assert by_patient["CXR1"]["label"][index["No Finding"]] == 1.0
    assert by_patient["CXR1"]["report"] == "FINDINGS: The lungs are clear. IMPRESSION: Normal chest x-."
    assert by_patient["CXR2"]["label"][index["Cardiomegaly"]] == 1.0
    assert by_patient["CXR2"]["label"][index["Fracture"]] == 1.0
    assert by_patient["CXR4"]["label"][index["Support Devices"]] == 1.0
    assert by_patient["CXR4"]["report"] == "IMPRESSION: Vertebral fracture."
    # MeSH coding is exhaustive for mapped classes (known negatives); unmapped classes are masked.
    mask = by_patient["CXR3"]["label_mask"]
    assert mask[index["Enlarged Cardiomediastinum"]] == mask[index["Pleural Other"]] == 0.0
    assert sum(mask) == 12 and by_patient["CXR3"]["label"][index["Cardiomegaly"]] == 0.0


def test_openi_xml_needs_projections_for_a_view_filter(openi_xml, tmp_path):
    with pytest.raises(DatasetFormatError, match="projections"):
        OpenIAdapter(openi_xml).prepare(tmp_path / "openi.json")
    summary = OpenIAdapter(openi_xml, views="all").prepare(tmp_path / "all.json")
    assert summary["items_written"] == 6 and "view_excluded" not in summary["skipped"]
    _, items = all_items(tmp_path / "all.json")
    assert not any("view" in it for it in items)  # the XML names no projection: the field is left out


def test_openi_items_carry_their_projection_as_view(openi_xml, tmp_path):
    projections = openi_xml.parent / "indiana_projections.csv"
    OpenIAdapter(openi_xml, projections=projections, views="all").prepare(tmp_path / "all.json")
    _, items = all_items(tmp_path / "all.json")
    view_of = {Path(it["image"]).stem.removeprefix("CXR"): it["view"] for it in items}
    assert view_of["1_IM-0001-4001"] == "FRONTAL" and view_of["1_IM-0001-3001"] == "LATERAL"
    assert sorted(view_of.values()) == ["FRONTAL"] * 5 + ["LATERAL"]
    assert not any(key in it for it in items for key in ("sex", "age", "body_part"))
    OpenIFractureAdapter(openi_xml, projections=projections, views="LL").prepare(tmp_path / "fracture.json")
    _, items = all_items(tmp_path / "fracture.json")
    assert [(Path(it["image"]).stem, it["view"]) for it in items] == [("CXR1_IM-0001-3001", "LATERAL")]


def test_openi_fracture_subsets_from_mesh(openi_xml, tmp_path):
    adapter = OpenIFractureAdapter(openi_xml, projections=openi_xml.parent / "indiana_projections.csv", seed=4)
    summary = adapter.prepare(tmp_path / "fracture.json")
    datalist, items = all_items(tmp_path / "fracture.json")
    by_patient = {it["patient_id"]: it for it in items}
    assert datalist["class_names"] == ["rib_fracture", "clavicle_fracture"]
    assert by_patient["CXR2"]["image_label"] == [1.0, 0.0] and by_patient["CXR2"]["subset"] == "D_P"
    assert by_patient["CXR3"]["image_label"] == [0.0, 1.0] and by_patient["CXR3"]["subset"] == "D_P"
    assert by_patient["CXR4"]["image_label"] == [0.0, 0.0] and by_patient["CXR4"]["subset"] == "D_N"
    assert "CXR5" not in by_patient and summary["skipped"]["fracture_site_unspecified"] == 1
    # Record-positive images without regions cannot be scored by FROC, so they are trained on only.
    assert {it["patient_id"] for it in datalist["training"] if it["subset"] == "D_P"} == {"CXR2", "CXR3"}
    assert summary["subsets"]["training"]["D_P"] == 2


def test_openi_csv_layout_with_report_missing_for_an_image(tmp_path):
    root = tmp_path / "iu"
    root.mkdir()
    with open(root / "indiana_reports.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression"])
        writer.writerow(["1", "Pleural Effusion/right", "Pleural Effusion", "x", "x", "x", "Right effusion.", ""])
        writer.writerow(["2", "normal", "normal", "x", "x", "x", "", "Normal."])
    rows = [["1", "1_IM-1.dcm.png", "Frontal"], ["1", "1_IM-2.dcm.png", "Lateral"], ["2", "2_IM-1.dcm.png", "Frontal"],
            ["3", "3_IM-1.dcm.png", "Frontal"]]
    write_projections(root / "indiana_projections.csv", rows)
    for _, name, _ in rows:
        save_png(root / "images" / "images_normalized" / name)
    summary = OpenIAdapter(root, fractions=(1.0, 0.0, 0.0)).prepare(tmp_path / "iu.json")
    datalist, items = all_items(tmp_path / "iu.json")
    assert [it["image"] for it in datalist["training"]] == [
        "iu/images/images_normalized/1_IM-1.dcm.png",
        "iu/images/images_normalized/2_IM-1.dcm.png",
    ]
    assert items[0]["label"][CHEXPERT_CLASSES.index("Pleural Effusion")] == 1.0
    assert summary["skipped"] == {"report_missing": 1, "view_excluded": 1}
    assert [it["view"] for it in items] == ["FRONTAL", "FRONTAL"]


def test_openi_real_iu_csv_prevalence_matches_an_independent_count(tmp_path):
    if not (IU / "indiana_reports.csv").is_file():
        pytest.skip(f"IU X-ray report CSVs not found at {IU}")
    summary = OpenIAdapter(IU, check_images=False, seed=0).prepare(tmp_path / "iu.json")
    with open(IU / "indiana_reports.csv", newline="") as handle:
        reports = {row["uid"]: row for row in csv.DictReader(handle)}
    with open(IU / "indiana_projections.csv", newline="") as handle:
        projections = list(csv.DictReader(handle))
    kept = []
    for row in projections:
        report = reports[row["uid"]]
        problems = report["Problems"].split(";")
        if row["projection"] != "Frontal" or "No Indexing" in problems:
            continue
        if report["findings"].strip() or report["impression"].strip():
            kept.append(problems)
    assert summary["items_written"] == len(kept) == 3703
    expected = {
        "Cardiomegaly": sum("Cardiomegaly" in p for p in kept),
        "No Finding": sum("normal" in p for p in kept),
        "Fracture": sum("Fractures, Bone" in p for p in kept),
        "Pleural Effusion": sum("Pleural Effusion" in p for p in kept),
        "Lung Lesion": sum("Nodule" in p or "Mass" in p for p in kept),
    }
    for name, count in expected.items():
        stats = [summary["label_prevalence"][split][name] for split in SPLITS]
        assert sum(s["positive"] for s in stats) == count, name
        assert sum(s["labelled"] for s in stats) == len(kept)
    assert summary["label_prevalence"]["training"]["Enlarged Cardiomediastinum"]["labelled"] == 0
    assert sum(summary["skipped"].values()) + summary["items_written"] == len(projections)

    fracture = OpenIFractureAdapter(IU, check_images=False).prepare(tmp_path / "iu_fracture.json")
    frontal = [
        reports[row["uid"]]["MeSH"] for row in projections
        if row["projection"] == "Frontal" and "No Indexing" not in reports[row["uid"]]["MeSH"]
    ]
    rib = sum("Fractures, Bone/ribs" in mesh for mesh in frontal)
    clavicle = sum("Fractures, Bone/clavicle" in mesh for mesh in frontal)
    assert sum(fracture["label_prevalence"][s]["rib_fracture"]["positive"] for s in SPLITS) == rib
    assert sum(fracture["label_prevalence"][s]["clavicle_fracture"]["positive"] for s in SPLITS) == clavicle
    assert fracture["subsets"]["training"]["D_P"] == sum(
        ("Fractures, Bone/ribs" in mesh) or ("Fractures, Bone/clavicle" in mesh) for mesh in frontal
    )
