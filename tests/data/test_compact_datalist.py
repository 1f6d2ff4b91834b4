"""Datalists read in blocks, one item at a time, and the compact datalist the bundles' datasets hold."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
from PIL import Image

from cxrkd_monai.data import CompactDatalist, compact_datalist, load_class_names, load_datalist
from cxrkd_monai.data.compact_datalist import read_datalist_value, scan_datalist_split
from cxrkd_monai.errors import InvalidDatalistError, InvalidItemError

REPORTS = [
    "Heart size normal. No pneumothorax.",
    "Épanchement pleural droit; cœur élargi.",  # non-ASCII: byte offsets differ from character offsets
    "Nodule 3 cm — follow up 🩻 in 3 months.",  # a 4-byte character
    "",
]


def _datalist(folder: Path, count: int = 9, bom: bool = False, indent: int | None = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8)).save(folder / "x.png")
    items = [
        {
            "image": "x.png",
            "report": REPORTS[i % len(REPORTS)],
            "label": [i % 2, 1.5e-3 * i, 0],
            "subset": ["D_R", "D_P", "D_N"][i % 3],
            "sex": "F",
            "nested": {"boxes": [[1, 2, 3, 4, "rib"]], "weight": 10**i},
        }
        for i in range(count)
    ]
    content = {"validation": items[:2], "training": items, "class_names": ["a", "b", "c"], "test": ["x.png"]}
    text = json.dumps(content, indent=indent, ensure_ascii=False)
    path = folder / "datalist.json"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


@pytest.mark.parametrize("block_bytes", [5, 64, 1 << 20])
@pytest.mark.parametrize(("bom", "indent"), [(False, 2), (True, None)])
def test_block_reads_give_the_items_of_a_whole_parse(tmp_path, monkeypatch, block_bytes, bom, indent):
    """Tiny blocks split items, numbers and multi-byte characters; every item still equals json.load's."""
    monkeypatch.setattr(compact_datalist, "_BLOCK_BYTES", block_bytes)
    path = _datalist(tmp_path, bom=bom, indent=indent)
    whole = json.loads(path.read_bytes().decode("utf-8-sig"))
    raw = path.read_bytes()
    for key in ("training", "validation", "test"):
        entries = list(scan_datalist_split(path, key))
        assert [value for _, _, value in entries] == whole[key]
        for offset, length, value in entries:  # the spans hold exactly each item's bytes
            assert json.loads(raw[offset : offset + length].decode("utf-8")) == value
    assert read_datalist_value(path, "class_names") == ["a", "b", "c"]
    assert load_class_names(str(path)) == ["a", "b", "c"]


@pytest.mark.parametrize("subsets", [None, ["D_P"], ["D_R", "D_N"]])
def test_compact_datalist_equals_the_eager_list(tmp_path, subsets):
    path = _datalist(tmp_path)
    eager = load_datalist(str(path), "training", subsets=subsets)
    compact = load_datalist(str(path), "training", subsets=subsets, compact=True)
    assert isinstance(compact, CompactDatalist) and len(compact) == len(eager)
    assert list(compact) == eager
    assert compact[-1] == eager[-1] and list(compact[1:3]) == eager[1:3]
    with pytest.raises(IndexError):
        compact[len(eager)]
    assert "sex" not in compact[0] and compact[0]["image"] == str(tmp_path / "x.png")
    assert load_datalist(str(path), "training", subgroup_fields=True, compact=True)[0]["sex"] == "F"
    restored = pickle.loads(pickle.dumps(compact))  # what DataLoader workers and DDP ranks receive
    assert list(restored) == eager
    compact[0]["report"] = "changed"
    assert compact[0] == eager[0], "each access decodes a new dict"


def test_an_edited_datalist_is_named_instead_of_read_at_the_wrong_place(tmp_path):
    path = _datalist(tmp_path)
    compact = load_datalist(str(path), "training", compact=True)
    path.write_text(path.read_text().replace("Heart", "Lung"))
    os.utime(path, ns=(0, 10**9))
    with pytest.raises(InvalidDatalistError, match="changed after it was loaded"):
        compact[0]


def test_bad_files_get_the_errors_of_the_whole_parse(tmp_path):
    path = _datalist(tmp_path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # truncated mid-item
    with pytest.raises(InvalidDatalistError, match=r"not valid JSON: .* at line \d+, column \d+"):
        load_datalist(str(path), "training", compact=True)
    path.write_bytes(b'{"training": [{"image": "x.png", "report": "caf\xe9"}]}')  # Latin-1, not UTF-8
    with pytest.raises(InvalidDatalistError, match="not UTF-8 text: byte 0xe9"):
        load_datalist(str(path), "training")
    path.write_text('{"training": {"image": "x.png"}, "class_names": ["a"]}')
    with pytest.raises(InvalidDatalistError, match="'training' must be a list of items, got a JSON dict"):
        load_datalist(str(path), "training", compact=True)
    with pytest.raises(InvalidDatalistError, match=r"has no 'validation' list \(keys: \['class_names', 'training'\]\)"):
        load_datalist(str(path), "validation")
    path.write_text('[{"image": "x.png"}]')
    with pytest.raises(InvalidDatalistError, match="must hold a JSON object"):
        load_datalist(str(path), "training")
    path.write_text('{"training": [{"image": "x.png"}, 7]}')
    with pytest.raises(InvalidItemError, match="item 1 must be an object with an 'image' path, got int"):
        load_datalist(str(path), "training", compact=True)
