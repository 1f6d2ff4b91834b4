"""Reading MONAI datalist JSON files, with every item and image checked before a run starts.

A datalist is UTF-8 JSON (a byte-order mark is accepted): an object holding ``class_names`` and the lists
``training``, ``validation`` and ``test``, whose items are objects with at least an ``image`` path (relative to
the datalist's folder, or absolute); a ``test`` list may also hold bare image paths, as in the Medical
Segmentation Decathlon format. The item checks run here, eagerly, are those that need neither the loaded image nor
the bundle's classes, so that a bad datalist fails before any dataset is built, naming the file, the list,
the item and the key. An empty split is refused, naming the file and the split; and a caller that reads labels
passes its ``class_names``, which must be the datalist's own, in the same order (:func:`check_class_names`).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrkd_monai.data.compact_datalist import CompactDatalist, read_datalist_value, scan_datalist_split
from cxrkd_monai.errors import InvalidDatalistError, InvalidItemError, require_utf8
from cxrkd_monai.utils.fracture_subsets import FRACTURE_SUBSETS

__all__ = [
    "SUBGROUP_KEYS",
    "TEXT_KEYS",
    "DatalistItem",
    "check_class_names",
    "load_class_names",
    "load_datalist",
]

TEXT_KEYS = ("report",)
# Descriptive fields an adapter writes where its source records them (docs/data.md, "Subgroup fields"). Reports
# group by them; the training and inference pipelines never read them, and an item may lack any of them.
SUBGROUP_KEYS = ("sex", "age", "view", "body_part")
"""Item keys holding free text; each must be a string (or null) that can be encoded as UTF-8."""


def load_datalist(
    path: str,
    key: str = "training",
    subsets: Sequence[str] | None = None,
    require_images: bool = True,
    subgroup_fields: bool = False,
    compact: bool = False,
    allow_empty: bool = False,
    class_names: Sequence[str] | None = None,
) -> list[dict] | CompactDatalist:
    """Items of ``key`` in the datalist at ``path``, image paths resolved against the datalist's folder.

    Every item is checked here: it is an object with a non-empty string ``image`` whose file exists, a
    ``subset`` (where present) is one of D_R, D_P, D_N, and text under :data:`TEXT_KEYS` is a string that can
    be encoded as UTF-8 (a lone surrogate such as ``"\\ud800"`` would otherwise pass and crash mid-epoch).
    The file is read in blocks and its items decoded one at a time
    (:func:`~cxrkd_monai.data.compact_datalist.scan_datalist_split`).

    Args:
        path: a MONAI datalist JSON file.
        key: ``"training"``, ``"validation"``, ``"test"``.
        subsets: keep only items whose ``subset`` is one of these (fracture datalists: D_R, D_P, D_N).
        require_images: raise when a listed image file does not exist. Inference passes ``False``: there a
            missing file is one failed item (a row of ``errors.csv``), not the end of the run.
        subgroup_fields: keep the :data:`SUBGROUP_KEYS` (reports group by them). The bundles' pipelines leave
            them out: a source records them for some images only, and items that differ in keys cannot be
            collated into one batch.
        compact: return a :class:`~cxrkd_monai.data.CompactDatalist`, which keeps each item's place in the file
            (16 bytes) and decodes it on access, instead of a list of dicts. The bundles' datasets use it, so that
            a run's memory does not grow with its datalist's content.
        allow_empty: return an empty split (no items, or none of ``subsets``) instead of raising. A run needs
            items: the bundles leave it ``False``, so that an empty split stops the run before its first epoch.
        class_names: the classes the caller reads the items' labels as, in label order (a bundle's
            ``class_names``). When given and the datalist stores ``class_names``, both must be the same names in
            the same order (:func:`check_class_names`): labels are read by position.

    Returns:
        The items in file order (new dicts), ``image`` an absolute or datalist-relative path joined to the
        datalist's folder, the other keys as stored (the :data:`SUBGROUP_KEYS` only with ``subgroup_fields``).

    Raises:
        FileNotFoundError: the datalist, or with ``require_images`` one of its images, is missing (the path is
            named).
        InvalidDatalistError: the file cannot be read as a datalist (see
            :func:`~cxrkd_monai.data.datalist_json.read_datalist_json`), it has no list under ``key``, the split is
            empty (unless ``allow_empty``; the file and ``key`` are named), or its ``class_names`` differ from
            ``class_names`` (both lists are shown).
        InvalidItemError: an item is invalid; the message names the datalist, ``key``, the item's position and
            image, and the offending key.
    """
    datalist_path = Path(path)
    if class_names is not None:
        check_class_names(datalist_path, class_names)
    finish = DatalistItem(f"Datalist {datalist_path} '{key}'", str(datalist_path.parent), subgroup_fields)
    wanted = None if subsets is None else set(subsets)
    items: list[dict] = []
    spans, indices = array("q"), array("q")
    subset_values: set = set()
    missing: list[str] = []
    listed = 0
    for index, (offset, length, value) in enumerate(scan_datalist_split(datalist_path, key)):
        listed += 1
        item = finish(value, index)
        if wanted is not None:
            subset_values.add(item.get("subset"))
            if item.get("subset") not in wanted:
                continue
        if not Path(item["image"]).is_file():
            missing.append(item["image"])
        if compact:
            spans.extend((offset, length))
            indices.append(index)
        else:
            items.append(item)
    unknown = subset_values - set(FRACTURE_SUBSETS)
    if unknown:
        raise InvalidItemError(
            f"Datalist {datalist_path} '{key}' has unknown subset values {sorted(map(str, unknown))}; "
            "expected D_R, D_P or D_N."
        )
    if missing and require_images:
        raise FileNotFoundError(
            f"{len(missing)} image(s) listed in {datalist_path} '{key}' do not exist, first: {missing[0]}"
        )
    kept = len(indices) if compact else len(items)
    if not kept and not allow_empty:
        raise InvalidDatalistError(_empty_split_message(datalist_path, key, listed, subsets))
    if compact:
        return CompactDatalist(
            datalist_path, np.frombuffer(spans, dtype=np.int64), finish, np.frombuffer(indices, dtype=np.int64)
        )
    return items


class DatalistItem:
    """Turns a decoded datalist entry into a pipeline item: checked, ``image`` joined to the datalist's folder.

    Args:
        where: ``"Datalist <path> '<key>'"``, the start of error messages.
        folder: the datalist's folder.
        subgroup_fields: keep the :data:`SUBGROUP_KEYS`.
    """

    def __init__(self, where: str, folder: str, subgroup_fields: bool) -> None:
        self.where, self.folder, self.subgroup_fields = where, folder, subgroup_fields

    def __call__(self, entry: Any, index: int) -> dict:
        """The item of ``entry``, the ``index``-th of its list.

        Raises:
            InvalidItemError: as :func:`load_datalist`.
        """
        item = _checked_item(entry, index, self.where)
        item["image"] = str(Path(self.folder) / item["image"])
        if not self.subgroup_fields:
            item = {k: v for k, v in item.items() if k not in SUBGROUP_KEYS}
        return item


def load_class_names(path: str) -> list[str]:
    """The ``class_names`` list stored at the top of a datalist.

    Raises:
        InvalidDatalistError: the file cannot be read, or ``class_names`` is missing or not a list of
            distinct, non-empty strings.
    """
    names = read_datalist_value(path, "class_names")
    if names is None:
        raise InvalidDatalistError(f"Datalist {path} has no 'class_names'.")
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(name, str) and name for name in names)
        or len(set(names)) != len(names)
    ):
        raise InvalidDatalistError(f"Datalist {path} 'class_names' must be distinct non-empty strings, got {names!r}.")
    for name in names:
        require_utf8(name, f"Datalist {path} 'class_names'", InvalidDatalistError)
    return list(names)


def check_class_names(path: str | Path, class_names: Sequence[str]) -> None:
    """Raise unless ``class_names`` are the datalist's ``class_names``, the same names in the same order.

    A datalist's label vectors follow the order of its ``class_names``, and the bundles read them by position:
    names overridden in another order (``--class_names``) would put every label under another class, and the
    calibration and outputs would carry the wrong names. A datalist without ``class_names`` passes.

    Raises:
        InvalidDatalistError: the two lists differ in order or content (both are shown), or the datalist's
            ``class_names`` are invalid (see :func:`load_class_names`).
    """
    if read_datalist_value(path, "class_names") is None:
        return
    stored = load_class_names(str(path))
    given = list(class_names)
    if given != stored:
        raise InvalidDatalistError(
            f"Datalist {path} 'class_names' {stored} differ from the bundle's class_names {given}. Its labels "
            "are read by position, so the names must be the same and in the same order: pass "
            f'--class_names "{stored}", or a datalist written for these classes.'
        )


def _empty_split_message(path: Path, key: str, listed: int, subsets: Sequence[str] | None) -> str:
    """Why the split ``key`` of the datalist at ``path`` (``listed`` items before the ``subsets`` filter) is empty."""
    if not listed:
        return f"Datalist {path} '{key}' has no items; a run needs at least one."
    return (
        f"Datalist {path} '{key}' has no items of subset {', '.join(map(str, subsets or ()))} (it lists "
        f"{listed} item(s) of other subsets); a run needs at least one."
    )


def _checked_item(entry: Any, index: int, where: str) -> dict:
    """A copy of datalist entry ``index`` (a bare path becomes ``{"image": path}``) after the item-level checks."""
    item = {"image": entry} if isinstance(entry, str) else entry
    if not isinstance(item, dict):
        raise InvalidItemError(
            f"{where} item {index} must be an object with an 'image' path, got {type(entry).__name__}."
        )
    image = item.get("image")
    if not isinstance(image, str) or not image.strip():
        raise InvalidItemError(f"{where} item {index}: 'image' must be a non-empty path, got {image!r}.")
    require_utf8(image, f"{where} item {index}: 'image'")
    if "\x00" in image:
        raise InvalidItemError(f"{where} item {index}: 'image' {image!r} contains a NUL character.")
    named = f"{where} item {index} (image '{image}')"
    subset = item.get("subset")
    if subset is not None and not isinstance(subset, str):
        raise InvalidItemError(f"{named}: 'subset' must be one of {', '.join(FRACTURE_SUBSETS)}, got {subset!r}.")
    for text_key in TEXT_KEYS:
        text = item.get(text_key)
        if text is None:
            continue
        if not isinstance(text, str):
            # the type only: the value may hold report text, which no message may quote
            raise InvalidItemError(f"{named}: '{text_key}' must be a string, got {type(text).__name__}.")
        require_utf8(text, f"{named}: '{text_key}'")
    return dict(item)
