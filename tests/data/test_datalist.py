import json

import pytest

from cxrkd_monai.data.datalist import load_class_names, load_datalist
from cxrkd_monai.errors import InvalidDatalistError, InvalidItemError


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / "images" / name).write_bytes(b"")
    return tmp_path


def write(folder, content, name="datalist.json"):
    path = folder / name
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def test_items_are_checked_copies_with_image_paths_joined_to_the_datalist_folder(folder):
    path = write(
        folder,
        {
            "class_names": ["rib_fracture", "clavicle_fracture"],
            "training": [
                {"image": "images/a.png", "subset": "D_P", "report": "images", "image_label": [1, 0]},
                {"image": "images/b.png", "subset": "D_N", "report": None, "image_label": [0, 0]},
            ],
            "test": ["images/c.png"],
        },
    )
    items = load_datalist(str(path), "training")
    assert items == [
        # Text is never taken for a path, even when it names an existing folder.
        {"image": str(folder / "images/a.png"), "subset": "D_P", "report": "images", "image_label": [1, 0]},
        {"image": str(folder / "images/b.png"), "subset": "D_N", "report": None, "image_label": [0, 0]},
    ]
    assert [item["image"] for item in load_datalist(str(path), "training", subsets=["D_N"])] == [
        str(folder / "images/b.png")
    ]
    assert load_datalist(str(path), "test") == [{"image": str(folder / "images/c.png")}]
    assert load_class_names(str(path)) == ["rib_fracture", "clavicle_fracture"]


def test_datalist_that_is_not_utf8_names_the_file_and_byte_offset(folder):
    text = json.dumps({"training": [{"image": "images/a.png", "report": "Épanchement pleural."}]}, ensure_ascii=False)
    path = folder / "latin1.json"
    path.write_bytes(text.encode("latin-1"))
    offset = text.encode("latin-1").index(b"\xc9")
    expected = rf"latin1\.json is not UTF-8 text: byte 0xc9 at byte offset {offset}"
    with pytest.raises(InvalidDatalistError, match=expected):
        load_datalist(str(path))
    with pytest.raises(InvalidDatalistError, match=r"latin1\.json is not UTF-8"):
        load_class_names(str(path))


def test_a_byte_order_mark_is_accepted(folder):
    path = folder / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"training": [{"image": "images/a.png"}]}).encode())
    assert load_datalist(str(path)) == [{"image": str(folder / "images/a.png")}]


def test_byte_offset_counts_the_byte_order_mark(folder):
    path = folder / "bom_latin1.json"
    raw = b"\xef\xbb\xbf" + b'{"training": [{"image": "\xff"}]}'
    path.write_bytes(raw)
    offset = raw.index(b"\xff")
    with pytest.raises(InvalidDatalistError, match=rf"byte 0xff at byte offset {offset}"):
        load_datalist(str(path))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"training": [{"image": "images/a.png"},]}', r"not valid JSON: .* at line 1, column 41"),
        (b"[]", "must hold a JSON object.*got a JSON list"),
        (b'{"validation": []}', r"has no 'training' list \(keys: \['validation'\]\)"),
        (b'{"training": {"image": "images/a.png"}}', "'training' must be a list of items, got a JSON dict"),
        (b"[" * 100000, "nested too deeply|not valid JSON"),
    ],
)
def test_unreadable_datalist_names_the_file(folder, raw, message):
    path = folder / "bad.json"
    path.write_bytes(raw)
    with pytest.raises(InvalidDatalistError, match=message) as error:
        load_datalist(str(path))
    assert "bad.json" in str(error.value)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            # What json.load makes of the escape "\ud800": a string no UTF-8 file, tokenizer or hash accepts.
            {"image": "images/a.png", "report": "FINDINGS: No \ud800 effusion."},
            r"'training' item 1 \(image 'images/a\.png'\): 'report': text cannot be encoded as UTF-8.*position 13",
        ),
        ({"image": "images/a.png", "report": 3.5}, r"item 1 \(image 'images/a\.png'\): 'report' must be a string"),
        ({"image": ""}, r"item 1: 'image' must be a non-empty path"),
        ({"label": [1, 0]}, r"item 1: 'image' must be a non-empty path, got None"),
        (["images/a.png"], r"item 1 must be an object with an 'image' path"),
        ({"image": "images/a.png", "subset": 1}, r"item 1 \(image 'images/a\.png'\): 'subset' must be one of"),
    ],
)
def test_invalid_item_names_the_datalist_item_and_key(folder, item, message):
    path = write(folder, {"training": [{"image": "images/b.png"}, item]})
    with pytest.raises(InvalidItemError, match=message) as error:
        load_datalist(str(path))
    assert "datalist.json" in str(error.value)


def test_unknown_subset_and_missing_images_are_named(folder):
    path = write(folder, {"training": [{"image": "images/a.png", "subset": "D_X"}, {"image": "images/zz.png"}]})
    unknown = r"datalist\.json 'training' has unknown subset values \['D_X', 'None'\]"
    with pytest.raises(InvalidItemError, match=unknown):
        load_datalist(str(path), subsets=["D_R"])
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) listed in .*datalist\.json 'training'.*zz\.png"):
        load_datalist(str(path))
    with pytest.raises(FileNotFoundError, match="Datalist not found"):
        load_datalist(str(folder / "absent.json"))


def test_inference_keeps_missing_images_as_items_for_the_errors_file(folder):
    path = write(folder, {"test": [{"image": "images/a.png"}, {"image": "images/zz.png"}]})
    items = load_datalist(str(path), "test", require_images=False)
    assert [item["image"] for item in items] == [str(folder / "images" / "a.png"), str(folder / "images" / "zz.png")]


@pytest.mark.parametrize("names", [None, "rib_fracture", [], ["a", "a"], ["a", 3], ["a", "\udc80"]])
def test_class_names_must_be_distinct_strings(folder, names):
    content = {"training": []} if names is None else {"class_names": names}
    path = write(folder, content)
    with pytest.raises(InvalidDatalistError, match="class_names"):
        load_class_names(str(path))


def test_subgroup_fields_present_on_some_items_only_are_left_out_so_a_batch_collates(folder):
    from monai.data import list_data_collate

    path = write(
        folder,
        {
            "training": [
                {"image": "images/a.png", "label": [1.0], "sex": "F", "age": 63, "view": "PA"},
                {"image": "images/b.png", "label": [0.0], "body_part": "hand"},
            ]
        },
    )
    raw = json.loads(path.read_text())["training"]
    with pytest.raises(KeyError):
        list_data_collate([dict(item) for item in raw])  # the failure the loader prevents
    items = load_datalist(str(path), "training")
    assert [sorted(item) for item in items] == [["image", "label"], ["image", "label"]]
    assert load_datalist(str(path), "training", subgroup_fields=True)[0]["sex"] == "F"
    assert list_data_collate(items)["image"] == [str(folder / "images/a.png"), str(folder / "images/b.png")]


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("key", ["training", "validation", "test"])
def test_an_empty_split_is_refused_naming_the_datalist_and_the_split(folder, key, compact):
    path = write(folder, {"class_names": ["a"], "training": [], "validation": [], "test": []})
    with pytest.raises(InvalidDatalistError) as raised:
        load_datalist(str(path), key, compact=compact)
    assert str(raised.value) == f"Datalist {path} '{key}' has no items; a run needs at least one."
    assert len(load_datalist(str(path), key, compact=compact, allow_empty=True)) == 0


def test_a_subset_filter_that_keeps_nothing_names_the_subsets(folder):
    path = write(folder, {"training": [{"image": "images/a.png", "subset": "D_P"}]})
    with pytest.raises(InvalidDatalistError) as raised:
        load_datalist(str(path), "training", subsets=["D_R", "D_N"])
    assert str(raised.value) == (
        f"Datalist {path} 'training' has no items of subset D_R, D_N (it lists 1 item(s) of other subsets); "
        "a run needs at least one."
    )
    assert load_datalist(str(path), "training", subsets=["D_R", "D_N"], allow_empty=True) == []
    assert len(load_datalist(str(path), "training", subsets=["D_P"])) == 1


@pytest.mark.parametrize(
    "given",
    [
        ["Effusion", "Cardiomegaly"],
        ["Cardiomegaly"],
        ["Cardiomegaly", "Effusion", "Edema"],
        ["cardiomegaly", "Effusion"],
    ],
    ids=["reordered", "fewer", "more", "other_spelling"],
)
def test_class_names_that_differ_from_the_datalists_are_refused_showing_both(folder, given):
    path = write(folder, {"class_names": ["Cardiomegaly", "Effusion"], "training": [{"image": "images/a.png"}]})
    with pytest.raises(InvalidDatalistError) as raised:
        load_datalist(str(path), "training", class_names=given)
    assert f"Datalist {path} 'class_names' ['Cardiomegaly', 'Effusion'] differ from the bundle's class_names " in str(
        raised.value
    )
    assert str(given) in str(raised.value)
    assert "--class_names \"['Cardiomegaly', 'Effusion']\"" in str(raised.value)


def test_the_datalists_own_class_names_pass_and_a_datalist_without_them_takes_any(folder):
    named = write(folder, {"class_names": ["Cardiomegaly", "Effusion"], "training": [{"image": "images/a.png"}]})
    assert len(load_datalist(str(named), "training", class_names=("Cardiomegaly", "Effusion"))) == 1
    unnamed = write(folder, {"training": [{"image": "images/a.png"}]}, name="unnamed.json")
    assert len(load_datalist(str(unnamed), "training", class_names=["Effusion"])) == 1
    broken = write(folder, {"class_names": ["Effusion", "Effusion"], "training": []}, name="broken.json")
    with pytest.raises(InvalidDatalistError, match="distinct non-empty strings"):
        load_datalist(str(broken), "training", class_names=["Effusion", "Effusion"])
