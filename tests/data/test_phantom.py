"""Tests of the synthetic chest radiograph generator: determinism, file contracts, reports, pixels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImage
from PIL import Image

from cxrkd_monai.data.phantom import (
    DEFAULT_PREVALENCE,
    FINDING_KINDS,
    FRACTURE_CLASS_NAMES,
    VKD_CLASS_NAMES,
    fracture_regions,
    generate_phantom_dataset,
    render_chest_radiograph,
    sample_acquisition,
    sample_anatomy,
    sample_findings,
    write_report,
)
from cxrkd_monai.data.reports import extract_findings_impression

WIDTH, HEIGHT = 128, 112  # non-square, so that a W/H mix-up shows
NUM_PATIENTS = 12

# Keyword rules a reader would use to label a report, one per VKD class.
CLASS_KEYWORDS = {
    "Cardiomegaly": r"cardiomegaly|cardiac silhouette|\bheart\b",
    "Pleural Effusion": r"effusion|costophrenic",
    "Lung Opacity": r"opacit|consolidation|airspace",
    "Lung Lesion": r"nodul|\bmass",
    "Pneumothorax": r"pneumothora",
    "Fracture": r"fracture",
}
NEGATION = re.compile(r"\b(no|not|without|normal|unremarkable|intact|clear|sharp)\b", re.IGNORECASE)
HEDGE = re.compile(r"possible|possibly|cannot be excluded|likely|questionable|may represent", re.IGNORECASE)
KIND_KEYWORDS = {
    "cardiomegaly": CLASS_KEYWORDS["Cardiomegaly"],
    "pleural_effusion": CLASS_KEYWORDS["Pleural Effusion"],
    "lung_opacity": CLASS_KEYWORDS["Lung Opacity"],
    "nodule": CLASS_KEYWORDS["Lung Lesion"],
    "pneumothorax": CLASS_KEYWORDS["Pneumothorax"],
    "rib_fracture": r"\bribs?\b.*fracture|fracture.*\bribs?\b",
    "clavicle_fracture": r"clavicle",
}
ONLY = {kind: 0.0 for kind in FINDING_KINDS}


def sentences(report: str) -> list[str]:
    return [s.strip() for s in re.split(r"\.\s", report.replace("FINDINGS:", "").replace("IMPRESSION:", ". "))]


def stated(report: str, pattern: str) -> bool:
    """The report affirms (or hedges) something matching ``pattern``."""
    return any(re.search(pattern, s, re.IGNORECASE) and not NEGATION.search(s) for s in sentences(report))


def denied_or_silent(report: str, pattern: str) -> bool:
    """Every sentence matching ``pattern`` is negated."""
    return all(NEGATION.search(s) for s in sentences(report) if re.search(pattern, s, re.IGNORECASE))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("phantom")
    paths = generate_phantom_dataset(root, num_patients=NUM_PATIENTS, seed=3, image_size=(WIDTH, HEIGHT))
    return {key: Path(value) for key, value in paths.items()}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def twin(kind: str, seed: int, image_size=(WIDTH, HEIGHT)):
    """A study with exactly one finding kind, its image, and the same study rendered without it."""
    rng = np.random.default_rng([seed, 17])
    anatomy, acquisition = sample_anatomy(rng), sample_acquisition(rng)
    findings = sample_findings(rng, anatomy, {**ONLY, kind: 1.0})
    with_finding = render_chest_radiograph(anatomy, acquisition, findings, image_size).astype(np.int32)
    without = render_chest_radiograph(anatomy, acquisition, (), image_size).astype(np.int32)
    return anatomy, acquisition, findings, with_finding, without


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    options = {"num_patients": 4, "image_size": (96, 96)}
    first = generate_phantom_dataset(tmp_path / "a", seed=5, **options)
    again = generate_phantom_dataset(tmp_path / "b", seed=5, **options)
    other = generate_phantom_dataset(tmp_path / "c", seed=6, **options)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) > 4
    for relative in files:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes(), relative
    first_image = sorted(Path(first["image_dir"]).glob("*.png"))[0]
    other_image = Path(other["image_dir"]) / first_image.name
    assert Path(first["datalist_vkd"]).read_bytes() != Path(other["datalist_vkd"]).read_bytes()
    assert not other_image.exists() or other_image.read_bytes() != first_image.read_bytes()
    assert Path(again["summary"]).read_bytes() == Path(first["summary"]).read_bytes()


def test_images_are_8bit_grayscale_pngs_of_the_requested_size(dataset):
    items = [item for split in ("training", "validation", "test") for item in load(dataset["datalist_vkd"])[split]]
    assert len(items) >= NUM_PATIENTS
    for item in items:
        with Image.open(dataset["datalist_vkd"].parent / item["image"]) as image:
            assert image.format == "PNG" and image.mode == "L" and image.size == (WIDTH, HEIGHT)
            pixels = np.asarray(image)
        assert pixels.dtype == np.uint8 and pixels.std() > 20  # a radiograph, not a flat field
    # MONAI's reader puts x first: (W, H).
    array = LoadImage(image_only=True)(str(dataset["datalist_vkd"].parent / items[0]["image"]))
    assert tuple(array.shape) == (WIDTH, HEIGHT)


def test_vkd_datalist_follows_the_contract(dataset):
    content = load(dataset["datalist_vkd"])
    assert content["class_names"] == list(VKD_CLASS_NAMES)
    for split in ("training", "validation", "test"):
        items = load_decathlon_datalist(str(dataset["datalist_vkd"]), data_list_key=split)
        assert items, split
        for item, raw in zip(items, content[split]):
            assert set(raw) == {"image", "report", "label", "patient_id"}
            assert Path(item["image"]).is_file()
            assert len(raw["label"]) == 6 and set(raw["label"]) <= {0, 1}
            assert raw["report"].startswith("FINDINGS: ") and " IMPRESSION: " in raw["report"]
            assert raw["image"].startswith(f"images/{raw['patient_id']}_s")


def test_fracture_datalist_follows_the_contract(dataset):
    content = load(dataset["datalist_fracture"])
    assert content["class_names"] == list(FRACTURE_CLASS_NAMES)
    subsets = set()
    for split in ("training", "validation", "test"):
        for item in content[split]:
            positive = any(item["image_label"])
            subsets.add(item["subset"])
            assert len(item["image_label"]) == 2 and set(item["image_label"]) <= {0, 1}
            if item["subset"] == "D_P":
                assert split == "training" and positive
                assert "boxes" not in item and "points" not in item
                continue
            assert item["subset"] == ("D_R" if positive else "D_N")
            assert len(item["boxes"]) == len(item["points"])
            classes = {box[4] for box in item["boxes"]}
            assert classes == {name for name, flag in zip(FRACTURE_CLASS_NAMES, item["image_label"]) if flag}
            for (x1, y1, x2, y2, name), (x, y, point_name) in zip(item["boxes"], item["points"]):
                assert 0 <= x1 < x2 <= WIDTH and 0 <= y1 < y2 <= HEIGHT
                assert x1 <= x <= x2 and y1 <= y <= y2 and name == point_name
                assert (x2 - x1) < WIDTH / 4 and (y2 - y1) < HEIGHT / 4  # tight, not the whole chest
    assert subsets == {"D_R", "D_P", "D_N"}


def test_region_annotated_fraction_sets_the_share_of_training_positives_with_boxes(tmp_path):
    for fraction in (0.0, 0.5, 1.0):
        paths = generate_phantom_dataset(
            tmp_path / str(fraction), num_patients=10, image_size=(64, 64), region_annotated_fraction=fraction
        )
        training = load(Path(paths["datalist_fracture"]))["training"]
        positives = [item for item in training if any(item["image_label"])]
        annotated = [item for item in positives if item["subset"] == "D_R"]
        assert positives
        expected = max(1, round(fraction * len(positives))) if fraction > 0 else 0
        assert len(annotated) == expected


def test_splits_are_per_patient_and_summary_counts_match(dataset):
    vkd, fracture, summary = (load(dataset[key]) for key in ("datalist_vkd", "datalist_fracture", "summary"))
    patients = {split: {item["patient_id"] for item in vkd[split]} for split in ("training", "validation", "test")}
    assert not patients["training"] & patients["validation"]
    assert not patients["training"] & patients["test"]
    assert not patients["validation"] & patients["test"]
    assert sum(len(p) for p in patients.values()) == NUM_PATIENTS
    # round(0.6 * 12) = 7 training, round(0.2 * 12) = 2 validation, the other 3 test.
    assert [len(patients[s]) for s in ("training", "validation", "test")] == [7, 2, 3]
    for split, members in patients.items():
        assert {item["patient_id"] for item in fracture[split]} == members
        counts = summary["splits"][split]
        assert counts["patients"] == len(members) and counts["images"] == len(vkd[split])
        for index, name in enumerate(VKD_CLASS_NAMES):
            assert counts["vkd_positives"][name] == sum(item["label"][index] for item in vkd[split])
        assert counts["fracture_subsets"]["D_P"] == sum(item["subset"] == "D_P" for item in fracture[split])


def test_reports_state_every_positive_class_and_never_affirm_a_negative_one(dataset):
    items = [item for split in ("training", "validation", "test") for item in load(dataset["datalist_vkd"])[split]]
    rng = np.random.default_rng(0)
    anatomy = sample_anatomy(rng)
    for _ in range(300):
        findings = sample_findings(rng, anatomy)
        kinds = {f.kind for f in findings}
        label = [int(any(k in kinds for k in group)) for group in (
            ("cardiomegaly",), ("pleural_effusion",), ("lung_opacity",), ("nodule",), ("pneumothorax",),
            ("rib_fracture", "clavicle_fracture"),
        )]
        items.append({"report": write_report(findings, rng), "label": label})
    for item in items:
        for name, flag in zip(VKD_CLASS_NAMES, item["label"]):
            if flag:
                assert stated(item["report"], CLASS_KEYWORDS[name]), (name, item["report"])
            else:
                assert denied_or_silent(item["report"], CLASS_KEYWORDS[name]), (name, item["report"])
    reports = [item["report"] for item in items]
    placeholders = [report for report in reports if "XXXX" in report]
    assert placeholders
    # The report reader of the VKD bundle keeps both sections and strips the placeholders.
    for report in placeholders:
        cleaned = extract_findings_impression(report)
        assert cleaned.startswith("FINDINGS: ") and " IMPRESSION: " in cleaned and "XXXX" not in cleaned
    assert any(HEDGE.search(report) for report in reports)


def test_subtle_findings_are_hedged_and_fractures_name_the_bone():
    rng = np.random.default_rng(1)
    anatomy = sample_anatomy(rng)
    seen_subtle = set()
    for _ in range(200):
        findings = sample_findings(rng, anatomy, {kind: 0.5 for kind in FINDING_KINDS})
        report = write_report(findings, rng)
        for finding in findings:
            pattern = KIND_KEYWORDS[finding.kind]
            matching = [s for s in sentences(report) if re.search(pattern, s, re.IGNORECASE)]
            assert matching, (finding.kind, report)
            if finding.is_subtle:
                seen_subtle.add(finding.kind)
                assert any(HEDGE.search(s) for s in matching), (finding.kind, report)
            if finding.kind == "rib_fracture":
                ordinal = {1: "st", 2: "nd", 3: "rd"}.get(finding.rib, "th")
                assert re.search(rf"{finding.side} [^.]*\b{finding.rib}{ordinal}\b", report, re.IGNORECASE), report
            if finding.kind == "clavicle_fracture":
                assert f"{finding.side} " in " ".join(s for s in matching if "clavicle" in s), report
    assert seen_subtle == set(FINDING_KINDS)


def test_report_of_a_normal_study_denies_everything():
    rng = np.random.default_rng(2)
    for _ in range(50):
        report = write_report((), rng)
        assert report.startswith("FINDINGS: ")
        for pattern in CLASS_KEYWORDS.values():
            assert denied_or_silent(report, pattern), report
        assert not HEDGE.search(report)


@pytest.mark.parametrize("kind", FRACTURE_CLASS_NAMES)
@pytest.mark.parametrize("seed", range(4))
def test_a_fracture_changes_the_pixels_inside_its_box(kind, seed):
    anatomy, acquisition, findings, with_fracture, without = twin(kind, seed)
    difference = np.abs(with_fracture - without)
    regions = fracture_regions(anatomy, acquisition, findings, (WIDTH, HEIGHT))
    assert len(regions) == len(findings) >= 1
    inside = np.zeros(difference.shape, dtype=bool)
    for region in regions:
        assert region.class_name == kind
        x1, y1, x2, y2 = region.box
        inside[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = True
        x, y = region.point
        near_point = difference[max(int(y) - 2, 0) : int(y) + 3, max(int(x) - 2, 0) : int(x) + 3]
        assert near_point.max() >= 8, (region, near_point)
    # The break is where the twins differ: the largest change and most of the total lie in the boxes.
    assert inside[np.unravel_index(difference.argmax(), difference.shape)]
    assert difference[inside].sum() > 0.5 * difference.sum()
    assert difference[inside].mean() > 20 * difference[~inside].mean()


def test_fracture_boxes_scale_with_the_image():
    anatomy, acquisition, findings, _, _ = twin("rib_fracture", 0)
    small = fracture_regions(anatomy, acquisition, findings, (100, 100))[0]
    large = fracture_regions(anatomy, acquisition, findings, (200, 200))[0]
    np.testing.assert_allclose(np.asarray(large.point), 2 * np.asarray(small.point), rtol=1e-6)
    # The two-pixel margin does not scale; the step edge is half a pixel wide, hence the tolerance.
    np.testing.assert_allclose(large.box[2] - large.box[0], 2 * (small.box[2] - small.box[0]) - 4, atol=0.1)
    np.testing.assert_allclose(large.box[3] - large.box[1], 2 * (small.box[3] - small.box[1]) - 4, atol=0.1)


@pytest.mark.parametrize(
    "kind, brighter",
    [("cardiomegaly", True), ("pleural_effusion", True), ("lung_opacity", True), ("nodule", True),
     ("pneumothorax", False)],
)
def test_each_chest_finding_changes_the_image_the_expected_way(kind, brighter):
    for seed in range(3):
        _, _, findings, with_finding, without = twin(kind, seed)
        difference = with_finding - without
        changed = np.abs(difference) > 6
        assert changed.sum() >= 5, (kind, seed, findings)
        # Opacities add density (brighter); a pneumothorax removes lung tissue (darker).
        assert (difference[changed].mean() > 0) == brighter, (kind, seed)


@pytest.mark.parametrize("kind", ["lung_opacity", "nodule", "pneumothorax", "rib_fracture", "clavicle_fracture"])
def test_the_patients_right_is_on_the_image_left(kind):
    for seed in range(3):
        _, _, findings, with_finding, without = twin(kind, seed)
        _, column = np.unravel_index(np.argmax(np.abs(with_finding - without)), with_finding.shape)
        assert (column < WIDTH / 2) == (findings[0].side == "right"), (kind, seed, findings[0].side, column)


def test_prevalence_is_honoured():
    rng = np.random.default_rng(4)
    anatomy = sample_anatomy(rng)
    draws = 600
    requested = {**DEFAULT_PREVALENCE, "nodule": 0.5, "pneumothorax": 0.05}
    counts = dict.fromkeys(FINDING_KINDS, 0)
    for _ in range(draws):
        for kind in {f.kind for f in sample_findings(rng, anatomy, requested)}:
            counts[kind] += 1
    for kind in FINDING_KINDS:
        assert abs(counts[kind] / draws - requested[kind]) < 0.07, (kind, counts[kind])


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_prevalence_zero_and_one_give_no_and_only_positives(tmp_path, value):
    paths = generate_phantom_dataset(
        tmp_path, num_patients=4, image_size=(64, 64), prevalence=dict.fromkeys(FINDING_KINDS, value)
    )
    vkd, fracture = load(Path(paths["datalist_vkd"])), load(Path(paths["datalist_fracture"]))
    for split in ("training", "validation", "test"):
        assert all(item["label"] == [int(value)] * 6 for item in vkd[split])
        assert all(item["image_label"] == [int(value)] * 2 for item in fracture[split])
        assert all((item["subset"] == "D_N") == (value == 0) for item in fracture[split])


def test_changing_one_prevalence_leaves_the_other_findings_unchanged():
    anatomy = sample_anatomy(np.random.default_rng(5))
    for seed in range(10):
        alone = sample_findings(np.random.default_rng(seed), anatomy, {**ONLY, "pneumothorax": 1.0})
        together = sample_findings(
            np.random.default_rng(seed), anatomy, {**ONLY, "pneumothorax": 1.0, "rib_fracture": 1.0}
        )
        assert [f for f in together if f.kind == "pneumothorax"] == list(alone)
        assert any(f.kind == "rib_fracture" for f in together)


@pytest.mark.parametrize(
    "arguments, named",
    [
        ({"image_size": (63, 128)}, "image_size"),
        ({"image_size": (128,)}, "image_size"),
        ({"split_fractions": (0.5, 0.3, 0.3)}, "split_fractions"),
        ({"split_fractions": (0.0, 0.5, 0.5)}, "split_fractions"),
        ({"prevalence": {"fracture": 0.3}}, "'fracture'"),
        ({"prevalence": {"nodule": 1.5}}, "'nodule'"),
        ({"region_annotated_fraction": 1.2}, "region_annotated_fraction"),
        ({"studies_per_patient": (2, 1)}, "studies_per_patient"),
        ({"num_patients": 2}, "num_patients"),
    ],
)
def test_invalid_arguments_raise_naming_the_argument(tmp_path, arguments, named):
    options = {"num_patients": 4, "image_size": (64, 64), **arguments}
    with pytest.raises(ValueError, match=re.escape(named)):
        generate_phantom_dataset(tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()
