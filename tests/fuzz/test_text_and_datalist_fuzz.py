"""Fuzzing report processing and the datalist reader with generated text, JSON, encodings and byte damage.

Reports: the output is UTF-8 text without placeholders or runs of whitespace, and ``clean_report`` of it changes
nothing; input that is not text raises :class:`~cxrkd_monai.errors.InvalidItemError`. Datalists: the output is
a list of items whose images exist, or :class:`~cxrkd_monai.errors.InvalidDatalistError`,
:class:`~cxrkd_monai.errors.InvalidItemError` (naming the file), or ``FileNotFoundError`` for a listed image
that does not exist, as ``load_datalist`` documents.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from cxrkd_monai.data.datalist import load_class_names, load_datalist
from cxrkd_monai.errors import InvalidDatalistError, InvalidItemError
from cxrkd_monai.prepare.reports import clean_report, extract_findings_impression, report_from_sections, split_sections

REPORT_CASES, DATALIST_CASES = 200, 160

FRAGMENTS = st.sampled_from(
    [
        "FINDINGS:", "IMPRESSION:", "findings :", "Impression:", "CONCLUSION:", "INDICATION:", "COMPARISON: None.",
        "FINAL REPORT", "FINDINGS AND IMPRESSION:", "\n", "\r\n", " ", "\t", "\u2028", "\x1c", "___", "_", "XXXX",
        "XXX", "XXXXPM", "X", "x", ".", ",", ":", ";", "No acute disease", "Heart size normal", "\ud800",
        "\udcff", "\x00", "é", "日本", "\ufffd",
    ]
)  # fmt: skip
TEXT = st.one_of(st.lists(st.one_of(FRAGMENTS, st.text(max_size=6)), max_size=14).map("".join), st.text(max_size=40))
REPORT_INPUT = st.one_of(TEXT, TEXT, TEXT, st.none(), st.just(math.nan), st.integers(), st.binary(max_size=4))


def is_clean(text: str) -> bool:
    """UTF-8 text without placeholders, its whitespace collapsed to single spaces."""
    text.encode("utf-8")
    return " ".join(text.split()) == text and "__" not in text and "XXXX" not in text


def is_text_input(value) -> bool:
    return value is None or isinstance(value, str) or (isinstance(value, float) and math.isnan(value))


def test_report_processing_gives_clean_text_or_an_invalid_item_error(case_counter, fuzz_settings):
    count = case_counter("reports")

    @fuzz_settings(REPORT_CASES)
    @given(REPORT_INPUT, REPORT_INPUT)
    def run(report, other):
        count()
        for function, arguments in (
            (extract_findings_impression, (report,)),
            (clean_report, (report,)),
            (report_from_sections, (report, other)),
            (split_sections, (report,)),
        ):
            try:
                output = function(*arguments)
            except InvalidItemError as error:
                assert "Report text must be a string" in str(error)
                assert not all(is_text_input(argument) for argument in arguments)
                continue
            assert all(is_text_input(argument) for argument in arguments)
            if function is split_sections:
                assert all(isinstance(name, str) and isinstance(body, str) for name, body in output)
            else:
                assert isinstance(output, str) and is_clean(output), output
            if function is clean_report:
                assert clean_report(output) == output

    run()
    assert count.cases >= REPORT_CASES


JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(TEXT, children, max_size=3)),
    max_leaves=6,
)
IMAGE = st.sampled_from(["images/a.png", "images/b.png", "images/missing.png", "", " ", "images/a.png\x00", "images"])
GOOD_ITEM = st.fixed_dictionaries(
    {"image": st.sampled_from(["images/a.png", "images/b.png"])},
    optional={
        "report": TEXT,
        "subset": st.sampled_from(["D_R", "D_P", "D_N"]),
        "image_label": st.lists(st.sampled_from([0, 1]), min_size=2, max_size=2),
    },
)
ITEM = st.one_of(
    GOOD_ITEM,
    GOOD_ITEM,
    GOOD_ITEM,
    st.fixed_dictionaries(
        {"image": st.one_of(IMAGE, IMAGE, JSON_SCALAR)},
        optional={
            "report": st.one_of(TEXT, TEXT, JSON_VALUE),
            "subset": st.one_of(st.sampled_from(["D_R", "D_P", "D_N", "D_X"]), JSON_SCALAR),
            "label": JSON_VALUE,
            "image_label": st.lists(st.sampled_from([0, 1, 2, -1, math.nan]), max_size=3),
        },
    ),
    IMAGE,
    JSON_VALUE,
)
LIST = st.one_of(st.lists(ITEM, max_size=4), st.lists(ITEM, max_size=4), st.lists(ITEM, max_size=4), JSON_VALUE)
CLASS_NAMES = st.one_of(st.lists(st.sampled_from(["rib_fracture", "Atelectasis", "", "\ud800"])), TEXT)
WELL_FORMED = st.fixed_dictionaries(
    {"training": LIST, "validation": LIST, "test": LIST}, optional={"class_names": CLASS_NAMES}
)
DATALIST = st.one_of(
    WELL_FORMED,
    WELL_FORMED,
    WELL_FORMED,
    st.fixed_dictionaries(
        {}, optional={"class_names": CLASS_NAMES, "training": LIST, "validation": LIST, "test": LIST}
    ),
    JSON_VALUE,
)
ENCODINGS = st.sampled_from(["utf-8"] * 6 + ["utf-8-sig", "latin-1", "utf-16", "cp1252"])
DAMAGE = st.one_of(
    st.none(),
    st.none(),
    st.none(),
    st.none(),
    st.tuples(st.just("cut"), st.integers(0, 400)),
    st.tuples(st.just("insert"), st.integers(0, 400), st.binary(min_size=1, max_size=3)),
)


def serialise(content, ensure_ascii: bool, encoding: str, damage) -> bytes:
    text = json.dumps(content, ensure_ascii=ensure_ascii)
    # Lone surrogates pass through as the invalid bytes a broken writer would produce.
    errors = "surrogatepass" if encoding.startswith("utf") else "replace"
    raw = text.encode(encoding, errors=errors)
    if damage is None:
        return raw
    if damage[0] == "cut":
        return raw[: damage[1]]
    return raw[: damage[1]] + damage[2] + raw[damage[1] :]


def test_datalist_reader_gives_checked_items_or_a_named_error(tmp_path, case_counter, fuzz_settings):
    count = case_counter("datalist")
    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "images" / name).write_bytes(b"")
    path = tmp_path / "datalist.json"

    @fuzz_settings(DATALIST_CASES)
    @given(
        DATALIST,
        st.booleans(),
        ENCODINGS,
        DAMAGE,
        st.sampled_from(["training", "validation", "test"]),
        st.sampled_from([None, ["D_R"], ["D_P", "D_N"]]),
    )
    def run(content, ensure_ascii, encoding, damage, key, subsets):
        count()
        path.write_bytes(serialise(content, ensure_ascii, encoding, damage))
        try:
            items = load_datalist(str(path), key, subsets=subsets)
        except (InvalidDatalistError, InvalidItemError) as error:
            assert str(path) in str(error)
        except FileNotFoundError as error:
            assert "do not exist" in str(error) and str(path) in str(error)
        else:
            assert isinstance(items, list)
            for item in items:
                assert isinstance(item, dict) and Path(item["image"]).is_file()
                assert item.get("report") is None or isinstance(item["report"], str)
                str(item.get("report") or "").encode("utf-8")
                assert subsets is None or item["subset"] in subsets
        try:
            names = load_class_names(str(path))
        except InvalidDatalistError as error:
            assert str(path) in str(error)
        else:
            assert names and len(set(names)) == len(names) and all(isinstance(name, str) and name for name in names)

    run()
    assert count.cases >= DATALIST_CASES
