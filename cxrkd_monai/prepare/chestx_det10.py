"""ChestX-Det10: radiologist boxes for ten findings, including ``Fracture``, on NIH ChestX-ray14 images.

On-disk layout (release of the ChestX-Det10 repository)::

    root/train.json   [{"file_name": "00000033_000.png", "syms": ["Fracture", ...], "boxes": [[x1, y1, x2, y2]]}]
    root/test.json    same format
    root/train_data/<file_name>    root/test_data/<file_name>      (or one flat image_dir for both)

``syms[i]`` is the class of ``boxes[i]``. The annotations do not say whether a fracture is of a rib or of a
clavicle; every ``Fracture`` box is mapped to ``fracture_class`` (default ``rib_fracture``, since rib
fractures are by far the more common on chest radiographs). An image with a Fracture box is D_R; an image
annotated without one is D_N (the readers looked for all ten findings). Points are the box centres.

The patient is the NIH patient number (the 8 digits before ``_`` in ``00000033_000.png``); a file name
without it (the later ``36237.png`` renaming) is its own patient. The official train/test files share
patients, so ``official_split=True`` keeps the test file as the test split and drops (and counts) the training
images of test patients.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from cxrkd_monai.prepare.base import DatasetAdapter, DatasetFormatError, Record
from cxrkd_monai.prepare.labels import FRACTURE_CLASSES
from cxrkd_monai.utils.fracture_subsets import fracture_subset

__all__ = ["ChestXDet10Adapter"]

TABLES = (("train.json", "train_data", ("training", "validation")), ("test.json", "test_data", "test"))
_NIH_NAME = re.compile(r"^(\d{8})_\d{3}\.png$")


class ChestXDet10Adapter(DatasetAdapter):
    """AALS datalist from ChestX-Det10 Fracture boxes; see the module docstring for layout and mapping.

    Args:
        root: the folder holding ``train.json`` and ``test.json``.
        image_dir: one folder (relative to ``root`` or absolute) holding the images of both files, e.g. the NIH
            ``images/`` folder; default ``train_data/`` and ``test_data/``.
        fracture_class: the fracture type ``Fracture`` boxes are given, one of ``rib_fracture``,
            ``clavicle_fracture``.
        **kwargs: :class:`DatasetAdapter` options (ChestX-Det10 images are frontal, so ``views`` does not apply).

    Example::

        ChestXDet10Adapter("ChestX-Det10-Dataset", image_dir="/data/nih/images").prepare("det10_fracture.json")
    """

    name = "chestx_det10"
    task = "fracture"

    def __init__(
        self, root: str | Path, image_dir: str | Path | None = None, fracture_class: str = "rib_fracture", **kwargs
    ) -> None:
        super().__init__(root, **kwargs)
        if fracture_class not in FRACTURE_CLASSES:
            raise ValueError(f"fracture_class must be one of {FRACTURE_CLASSES}, got {fracture_class!r}.")
        self.image_dir = image_dir
        self.fracture_class = fracture_class

    def options(self) -> dict:
        return {**super().options(), "fracture_class": self.fracture_class}

    def records(self) -> Iterator[Record]:
        tables = [(self.root / name, folder, split) for name, folder, split in TABLES]
        if not any(path.is_file() for path, _, _ in tables):
            raise DatasetFormatError(f"{str(self.root)!r} holds neither train.json nor test.json.")
        for path, folder, official in tables:
            if not path.is_file():
                continue
            image_folder = self.root / (self.image_dir if self.image_dir is not None else folder)
            for entry in self._entries(path):
                yield Record(self._item(image_folder, entry), official)

    def _entries(self, path: Path) -> list[dict]:
        try:
            entries = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise DatasetFormatError(f"ChestX-Det10 file {str(path)!r} is not valid JSON: {error}") from None
        for index, entry in enumerate(entries):
            missing = [key for key in ("file_name", "syms", "boxes") if key not in entry]
            if missing:
                raise DatasetFormatError(f"{str(path)!r} entry {index} lacks {missing}.")
            if len(entry["syms"]) != len(entry["boxes"]):
                raise DatasetFormatError(
                    f"{str(path)!r} entry {entry['file_name']!r} has {len(entry['syms'])} syms for "
                    f"{len(entry['boxes'])} boxes."
                )
        return entries

    def _item(self, image_folder: Path, entry: dict) -> dict:
        boxes = [
            [*(float(v) for v in box), self.fracture_class]
            for sym, box in zip(entry["syms"], entry["boxes"])
            if sym == "Fracture"
        ]
        points = [[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[4]] for b in boxes]
        image_label = [float(bool(boxes) and name == self.fracture_class) for name in FRACTURE_CLASSES]
        match = _NIH_NAME.match(entry["file_name"])
        return {
            "image": str(image_folder / entry["file_name"]),
            "image_label": image_label,
            "subset": fracture_subset(image_label, bool(boxes)),
            "boxes": boxes,
            "points": points,
            "patient_id": match.group(1) if match else Path(entry["file_name"]).stem,
        }
