"""Datasets of any size for the scale benchmarks: a few source radiographs repeated under distinct names.

Item ``k`` of every size is the same file name, a hard link (a copy where the file system refuses links)
to source ``k mod S``, so that a dataset of 100,000 items costs 100,000 directory entries and no image
bytes, while every per-name store (a preprocessed cache, MONAI's ``PersistentDataset``) still holds one
entry per item. The sizes are nested: the first ``n`` items of the largest dataset are the ``n``-item
dataset, so one build of the largest serves them all.

Two kinds of sources:

- ``"phantom"``: small synthetic radiographs (:func:`cxrkd_monai.phantom.generate_phantom_dataset`),
  cheap to decode, for the memory and size figures, where decoding cost is not what is measured;
- ``"real"``: the real chest radiographs of the shared ``cxr_format_samples`` folder (512 px PNGs and
  full-size DICOM, MONOCHROME1 and JPEG-compressed), for the decoding-cost figures. Each keeps the report
  and labels of a phantom item, which the loaders carry but do not look at. Where that folder is absent
  (a checkout without the shared data) the phantom sources are used and the report says so.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from benchmarks.bundle_data import REPO_ROOT
from cxrkd_monai.phantom import generate_phantom_dataset

__all__ = [
    "REAL_SAMPLES_DIR",
    "SourceSet",
    "phantom_sources",
    "real_or_phantom_sources",
    "write_repeated_items",
    "write_vkd_datalist",
]

REAL_SAMPLES_DIR = REPO_ROOT.parent / "shared" / "data" / "cxr_format_samples"
"""Real radiographs in the formats the loader handles (see that folder's ``SOURCE.md``)."""

_REAL_SAMPLE_NAMES = (
    "nih_00000001_000.png",
    "nih_00027426_000.png",
    "siim_cr_chest_pa_jpegbaseline.dcm",
    "pydicom_data_RG1_UNCI_cr_chest.dcm",
)
"""The real samples used: the fake MONOCHROME1 file repeats the JPEG DICOM's pixels, so it is left out."""


class SourceSet:
    """The source items a repeated dataset cycles through, and how they are described in the report.

    Args:
        kind: ``"phantom"`` or ``"real"``.
        items: VKD datalist items ``{"image": absolute path, "report", "label"}``, at least one.
        class_names: the datalist's class names (one per ``label`` entry).
        description: one line for the report's setup table.
    """

    def __init__(self, kind: str, items: Sequence[dict], class_names: Sequence[str], description: str) -> None:
        if not items:
            raise ValueError(f"a {kind} source set needs at least one item, got none.")
        self.kind = kind
        self.items = [dict(item) for item in items]
        self.class_names = list(class_names)
        self.description = description


def phantom_sources(directory: str | Path, image_size: Sequence[int] = (72, 64), num_patients: int = 8) -> SourceSet:
    """The training items of a small phantom written to ``directory`` (``image_size`` is ``(W, H)``)."""
    directory = Path(directory)
    if not (directory / "datalist_vkd.json").is_file():
        generate_phantom_dataset(output_dir=str(directory), num_patients=num_patients, seed=0, image_size=image_size)
    datalist = json.loads((directory / "datalist_vkd.json").read_text())
    items = [
        {"image": str(directory / item["image"]), "report": item["report"], "label": item["label"]}
        for item in datalist["training"]
    ]
    width, height = image_size
    return SourceSet(
        "phantom",
        items,
        datalist["class_names"],
        f"{len(items)} synthetic phantom PNGs of {width}×{height} px",
    )


def real_or_phantom_sources(directory: str | Path) -> SourceSet:
    """The real samples (with phantom reports and labels) if present, else phantom PNGs at 512 px."""
    missing = [name for name in _REAL_SAMPLE_NAMES if not (REAL_SAMPLES_DIR / name).is_file()]
    phantom = phantom_sources(Path(directory) / "phantom_512", image_size=(512, 512), num_patients=4)
    if missing:
        phantom.description += f" (real samples absent: {', '.join(missing)} not found)"
        return phantom
    items = [
        {**template, "image": str(REAL_SAMPLES_DIR / name)}
        for name, template in zip(_REAL_SAMPLE_NAMES, itertools.cycle(phantom.items))
    ]
    description = (
        "4 real chest radiographs: 2 NIH PNGs (512×512, 8-bit), a JPEG-baseline DICOM (1024×1024) and an "
        "uncompressed MONOCHROME1 DICOM (1955×1841, 15-bit)"
    )
    return SourceSet("real", items, phantom.class_names, description)


def write_repeated_items(sources: SourceSet, folder: str | Path, count: int) -> list[dict]:
    """``count`` items whose images are distinct names in ``folder`` for the cycled ``sources``.

    Item ``k`` is ``folder/<k // 1000>/<k>.<suffix>`` (a thousand names per folder), linked to source
    ``k mod S``; names already present are kept, so a larger call extends a smaller one.
    """
    if count < 1:
        raise ValueError(f"count must be a positive integer, got {count}.")
    folder = Path(folder)
    items = []
    for index, template in zip(range(count), itertools.cycle(sources.items)):
        source = Path(template["image"])
        name = folder / f"{index // 1000:04d}" / f"{index:07d}{''.join(source.suffixes)}"
        if not name.exists():
            name.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, name)
            except OSError:  # another file system, or one without hard links
                shutil.copyfile(source, name)
        items.append({**template, "image": str(name)})
    return items


def write_vkd_datalist(
    items: Sequence[dict], class_names: Sequence[str], path: str | Path, num_validation: int = 2
) -> Path:
    """A VKD datalist at ``path``: ``items`` for training, the first ``num_validation`` of them for validation."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    datalist = {
        "class_names": list(class_names),
        "training": list(items),
        "validation": list(items[:num_validation]),
    }
    path.write_text(json.dumps(datalist))
    return path
