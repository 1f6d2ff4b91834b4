"""Reading MONAI datalist JSON files, with every image checked before a run starts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from monai.data import load_decathlon_datalist

__all__ = ["load_class_names", "load_datalist"]


def load_datalist(path: str, key: str = "training", subsets: Sequence[str] | None = None) -> list[dict]:
    """Items of ``key`` in the datalist at ``path``, image paths resolved against the datalist's folder.

    Args:
        path: a MONAI datalist JSON file.
        key: ``"training"``, ``"validation"``, ``"test"``.
        subsets: keep only items whose ``subset`` is one of these (fracture datalists: D_R, D_P, D_N).

    Raises:
        FileNotFoundError: the datalist or one of its images is missing (the path is named).
        KeyError: ``key`` is not in the datalist.
    """
    datalist_path = Path(path)
    if not datalist_path.is_file():
        raise FileNotFoundError(f"Datalist not found: {datalist_path}")
    with open(datalist_path) as f:
        content = json.load(f)
    if key not in content:
        raise KeyError(f"Datalist {datalist_path} has no '{key}' list (keys: {sorted(content)}).")
    items = load_decathlon_datalist(str(datalist_path), data_list_key=key, base_dir=str(datalist_path.parent))
    if subsets is not None:
        unknown = {item.get("subset") for item in items} - {"D_R", "D_P", "D_N"}
        if unknown:
            raise ValueError(f"Datalist {datalist_path} '{key}' has unknown subset values {sorted(map(str, unknown))}.")
        items = [item for item in items if item["subset"] in set(subsets)]
    missing = [item["image"] for item in items if not Path(item["image"]).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image(s) listed in {datalist_path} '{key}' do not exist, first: {missing[0]}"
        )
    return items


def load_class_names(path: str) -> list[str]:
    """The ``class_names`` list stored at the top of a datalist."""
    with open(path) as f:
        content = json.load(f)
    if "class_names" not in content:
        raise KeyError(f"Datalist {path} has no 'class_names'.")
    return list(content["class_names"])
