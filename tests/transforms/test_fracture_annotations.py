import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from PIL import Image

from cxrkd_monai.errors import InvalidItemError
from cxrkd_monai.transforms.fracture_annotations import EncodeFractureAnnotationsd

CLASSES = ["rib_fracture", "clavicle_fracture"]


@pytest.fixture
def png_item(tmp_path):
    """A loaded 48 x 32 (W x H) PNG item, the way the bundles load images."""
    path = tmp_path / "p0001_s01.png"
    Image.fromarray(np.zeros((32, 48), dtype=np.uint8)).save(path)
    load = Compose([LoadImaged("image", reader="PILReader", image_only=True), EnsureChannelFirstd("image")])
    return load({"image": str(path)})


def _encode(item, **overrides):
    return EncodeFractureAnnotationsd(class_names=CLASSES)({**item, **overrides})


def test_loaded_png_is_channel_first_width_height(png_item):
    assert tuple(png_item["image"].shape) == (1, 48, 32)


def test_conversion(png_item):
    out = _encode(
        png_item,
        subset="D_R",
        image_label=[1, 1],
        boxes=[[10, 12, 20, 30, "rib_fracture"], [0, 0, 48, 32, "clavicle_fracture"]],
        points=[[15.5, 21, "rib_fracture"]],
    )
    assert out["boxes"].dtype == np.float64
    np.testing.assert_array_equal(out["boxes"], [[10, 12, 20, 30, 0], [0, 0, 48, 32, 1]])
    np.testing.assert_array_equal(out["points"], [[15.5, 21, 0]])
    assert out["image_label"].dtype == torch.float32
    torch.testing.assert_close(out["image_label"], torch.tensor([1.0, 1.0]))
    assert out["subset"] == "D_R"
    assert out["subset_index"].dtype == torch.int64 and out["subset_index"].item() == 0


@pytest.mark.parametrize(("subset", "index"), [("D_P", 1), ("D_N", 2)])
def test_missing_annotations_give_empty_arrays(png_item, subset, index):
    out = _encode(png_item, subset=subset, image_label=[1, 0])
    assert out["boxes"].shape == (0, 5) and out["points"].shape == (0, 3)
    assert out["subset_index"].item() == index


def test_item_without_labels_passes_through(png_item):
    out = _encode(png_item)
    assert "subset_index" not in out and "image_label" not in out
    assert out["boxes"].shape == (0, 5)


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        ({"boxes": [[1, 1, 5, 5, "skull_fracture"]]}, "boxes", "skull_fracture.*rib_fracture.*clavicle_fracture"),
        ({"points": [[3, 4, "Fracture"]]}, "points", "'Fracture'"),
        ({"boxes": [[40, 1, 49, 5, "rib_fracture"]]}, "boxes", r"outside the image of size \(48, 32\)"),
        ({"boxes": [[1, -1, 5, 5, "rib_fracture"]]}, "boxes", "outside the image"),
        ({"points": [[10, 33, "rib_fracture"]]}, "points", "outside the image"),
        ({"boxes": [[8, 1, 8, 5, "rib_fracture"]]}, "boxes", "x2 <= x1"),
        ({"boxes": [[1, 6, 8, 5, "rib_fracture"]]}, "boxes", "y2 <= y1"),
        ({"boxes": [[1, 6, 8, "rib_fracture"]]}, "boxes", r"\[x1, y1, x2, y2, class\]"),
        ({"subset": "D_R", "boxes": [], "points": []}, "boxes.*points", "D_R"),
        ({"subset": "D_R"}, "boxes.*points", "D_R"),
        ({"image_label": [1, 0, 0]}, "image_label", "3 entries"),
        ({"subset": "D_X"}, "subset", "D_R.*D_P.*D_N.*'D_X'"),
        ({"boxes": [[float("nan"), 1, 5, 5, "rib_fracture"]]}, "boxes", "not a finite number"),
        ({"boxes": [[1, 1, 5, float("nan"), "rib_fracture"]]}, "boxes", "not a finite number"),
        ({"boxes": [[1, 1, float("inf"), 5, "rib_fracture"]]}, "boxes", "not a finite number"),
        ({"boxes": [[1, 1, "5", None, "rib_fracture"]]}, "boxes", "must hold numbers"),
        ({"points": [[float("nan"), 4, "rib_fracture"]]}, "points", "not a finite number"),
        ({"points": [[3, float("-inf"), "rib_fracture"]]}, "points", "not a finite number"),
        ({"points": "3, 4, rib_fracture"}, "points", "must be a list"),
        ({"image_label": [2, 0]}, "image_label", r"0 or 1 .*got \[2\.0, 0\.0\]"),
        ({"image_label": [0, -1]}, "image_label", r"0 or 1 .*got \[0\.0, -1\.0\]"),
        ({"image_label": [float("nan"), 0]}, "image_label", r"0 or 1 .*got \[nan, 0\.0\]"),
        ({"image_label": [0.5, 1]}, "image_label", "0 or 1"),
        ({"image_label": "1,0"}, "image_label", "must hold numbers"),
        ({"subset": ["D_R"]}, "subset", "D_R.*D_P.*D_N"),
    ],
)
def test_bad_input_names_file_and_key(png_item, overrides, key, message):
    with pytest.raises(InvalidItemError, match=message) as error:
        _encode(png_item, **overrides)
    text = str(error.value)
    assert "p0001_s01.png" in text
    assert all(f"'{k}'" in text for k in key.split(".*"))


def test_plain_tensor_image_is_named_by_shape():
    with pytest.raises(ValueError, match=r"'image' of shape \(1, 8, 8\).*'subset'"):
        EncodeFractureAnnotationsd(CLASSES)({"image": torch.zeros(1, 8, 8), "subset": "unknown"})


def test_duplicate_class_names_raise():
    with pytest.raises(ValueError, match="class_names"):
        EncodeFractureAnnotationsd(["rib_fracture", "rib_fracture"])
