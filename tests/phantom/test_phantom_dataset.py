"""generate_phantom_dataset: determinism, the image and datalist contracts, splits, and its arguments."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImage
from PIL import Image

from cxrkd_monai.phantom import (
    FINDING_KINDS,
    FRACTURE_CLASS_NAMES,
    VKD_CLASS_NAMES,
    generate_phantom_dataset,
)
from tests.phantom.conftest import HEIGHT, NUM_PATIENTS, WIDTH, load


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
