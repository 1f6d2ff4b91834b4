"""Fuzzing the checks a run's datalist passes before any dataset is built: empty splits and class-name order.

Splits: a split of zero to three items (one or two classes, fracture subsets or none), read eagerly or compact,
with or without a subset filter. Exactly the items the filter keeps come back, in file order; when it keeps none,
:class:`~cxrkd_monai.errors.InvalidDatalistError` names the datalist and the split. Class names: the datalist's
own names (one to four), and names given in their order, permuted, as a subset, with extra names, or respelled;
only the identical list is accepted, and the refusal shows both lists.
"""

from __future__ import annotations

import json
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from cxrkd_monai.data.datalist import load_datalist
from cxrkd_monai.errors import InvalidDatalistError

SPLIT_CASES, CLASS_NAME_CASES = 160, 160
SPLITS = ("training", "validation", "test")
SUBSETS = ("D_R", "D_P", "D_N")
NAMES = ("rib_fracture", "clavicle_fracture", "fracture", "Cardiomegaly", "Pleural Effusion", "Lung Opacity")


@st.composite
def split_datalists(draw) -> tuple[dict, int, list[str] | None]:
    """A datalist whose splits hold 0 to 3 items (0 and 1 most often) labelled for 1 or 2 classes, the number of
    classes, and a subset filter (only where the items carry subsets, as fracture datalists do)."""
    num_classes = draw(st.sampled_from([1, 2]))
    with_subsets = draw(st.booleans())
    content: dict = {"class_names": list(NAMES[:num_classes])}
    for split in SPLITS:
        items = []
        for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
            item = {
                "image": draw(st.sampled_from(["images/a.png", "images/b.png"])),
                "image_label": draw(st.lists(st.sampled_from([0, 1]), min_size=num_classes, max_size=num_classes)),
            }
            if with_subsets:
                item["subset"] = draw(st.sampled_from(SUBSETS))
            items.append(item)
        content[split] = items
    subsets = draw(st.sampled_from([None, ["D_R"], ["D_R", "D_N"], ["D_P"]])) if with_subsets else None
    return content, num_classes, subsets


def test_an_empty_split_is_refused_naming_it_and_one_item_is_read(tmp_path, case_counter, fuzz_settings):
    count = case_counter("splits")
    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "images" / name).write_bytes(b"")
    path = tmp_path / "datalist.json"
    outcomes: Counter[str] = Counter()

    @fuzz_settings(SPLIT_CASES)
    @given(split_datalists(), st.sampled_from(SPLITS), st.booleans())
    def run(datalist, key, compact):
        count()
        content, num_classes, subsets = datalist
        path.write_text(json.dumps(content))
        kept = [item for item in content[key] if subsets is None or item.get("subset") in subsets]
        try:
            items = load_datalist(str(path), key, subsets=subsets, compact=compact, class_names=NAMES[:num_classes])
        except InvalidDatalistError as error:
            assert not kept
            assert str(error).startswith(f"Datalist {path} '{key}' has no items")
            if content[key]:  # items, none of the subsets
                assert f"has no items of subset {', '.join(subsets)}" in str(error)
            outcomes["refused"] += 1
        else:
            outcomes[f"{min(len(kept), 2)} item(s), {num_classes} class(es)"] += 1
            assert [item["image"] for item in items] == [str(tmp_path / item["image"]) for item in kept]
            assert [item["image_label"] for item in items] == [item["image_label"] for item in kept]
        assert [dict(item) for item in load_datalist(str(path), key, subsets=subsets, allow_empty=True)] == [
            {**item, "image": str(tmp_path / item["image"])} for item in kept
        ]

    run()
    assert count.cases >= SPLIT_CASES
    # every kind of case was generated: refusals, and one and several items of one and two classes
    assert outcomes["refused"] and all(outcomes[f"{n} item(s), {c} class(es)"] for n in (1, 2) for c in (1, 2))


@st.composite
def class_name_pairs(draw) -> tuple[list[str] | None, list[str]]:
    """The datalist's ``class_names`` (or none) and the names a bundle is given: the same, permuted, a subset,
    with extra names, respelled, or any list of known names."""
    stored = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    kind = draw(st.sampled_from(["same", "permuted", "subset", "extra", "respelled", "any"]))
    if kind == "same":
        given_names = list(stored)
    elif kind == "permuted":
        given_names = draw(st.permutations(stored))
    elif kind == "subset":
        given_names = draw(st.lists(st.sampled_from(stored), max_size=len(stored), unique=True))
    elif kind == "extra":
        extra = draw(st.lists(st.sampled_from([n for n in NAMES if n not in stored]), min_size=1, unique=True))
        given_names = draw(st.permutations(stored + extra))
    elif kind == "respelled":
        position = draw(st.integers(0, len(stored) - 1))
        given_names = [name.upper() if i == position else name for i, name in enumerate(stored)]
    else:
        given_names = draw(st.lists(st.sampled_from(NAMES), max_size=4, unique=True))
    return (None if draw(st.integers(0, 9)) == 0 else stored), list(given_names)


def test_class_names_are_accepted_only_identical_to_the_datalists(tmp_path, case_counter, fuzz_settings):
    count = case_counter("class_names")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"")
    path = tmp_path / "datalist.json"
    outcomes: Counter[str] = Counter()

    @fuzz_settings(CLASS_NAME_CASES)
    @given(class_name_pairs(), st.sampled_from(SPLITS))
    def run(names, key):
        count()
        stored, given_names = names
        content: dict = {split: [{"image": "images/a.png"}] for split in SPLITS}
        if stored is not None:
            content["class_names"] = stored
        path.write_text(json.dumps(content))
        try:
            items = load_datalist(str(path), key, class_names=given_names)
        except InvalidDatalistError as error:
            assert stored is not None and given_names != stored
            assert f"Datalist {path} 'class_names' {stored} differ from the bundle's class_names {given_names}" in str(
                error
            )
            outcomes["refused"] += 1
        else:
            assert stored is None or given_names == stored
            outcomes["accepted" if stored else "no datalist class_names"] += 1
            assert [item["image"] for item in items] == [str(tmp_path / "images" / "a.png")]

    run()
    assert count.cases >= CLASS_NAME_CASES
    assert outcomes["refused"] and outcomes["accepted"] and outcomes["no datalist class_names"]
