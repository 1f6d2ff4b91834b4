"""Dataset adapters: each turns one public dataset (or a hospital CSV) into a bundle datalist.

``ADAPTERS`` maps the name used by ``cxrkd prepare <dataset>`` to the adapter class; classification adapters
write VKD items, fracture adapters write AALS items.
"""

from __future__ import annotations

from .base import ClassificationAdapter, DatasetAdapter, DatasetFormatError, PrepareSummary, Record, summary_path
from .chestx_det10 import ChestXDet10Adapter
from .chexpert import CheXpertAdapter
from .fracatlas import FracAtlasAdapter
from .generic_csv import GenericCsvAdapter, GenericFractureCsvAdapter
from .mimic_cxr import MimicCxrAdapter
from .openi import OpenIAdapter, OpenIFractureAdapter
from .vindr_cxr import VinDrCxrAdapter, fuse_reader_boxes

__all__ = [
    "ADAPTERS",
    "CheXpertAdapter",
    "ChestXDet10Adapter",
    "ClassificationAdapter",
    "DatasetAdapter",
    "DatasetFormatError",
    "FracAtlasAdapter",
    "GenericCsvAdapter",
    "GenericFractureCsvAdapter",
    "MimicCxrAdapter",
    "OpenIAdapter",
    "OpenIFractureAdapter",
    "PrepareSummary",
    "Record",
    "VinDrCxrAdapter",
    "fuse_reader_boxes",
    "get_adapter",
    "summary_path",
]

ADAPTERS: dict[str, type[DatasetAdapter]] = {
    adapter.name: adapter
    for adapter in (
        MimicCxrAdapter,
        OpenIAdapter,
        OpenIFractureAdapter,
        CheXpertAdapter,
        VinDrCxrAdapter,
        ChestXDet10Adapter,
        FracAtlasAdapter,
        GenericCsvAdapter,
        GenericFractureCsvAdapter,
    )
}


def get_adapter(name: str) -> type[DatasetAdapter]:
    """The adapter class registered as ``name`` (``-`` and ``_`` are interchangeable, case is ignored)."""
    key = name.strip().lower().replace("-", "_")
    if key not in ADAPTERS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(ADAPTERS)}.")
    return ADAPTERS[key]
