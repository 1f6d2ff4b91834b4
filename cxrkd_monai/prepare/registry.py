"""The dataset adapters by name: ``cxrkd prepare <dataset>`` looks its adapter up here."""

from __future__ import annotations

from .base import DatasetAdapter
from .chestx_det10 import ChestXDet10Adapter
from .chexpert import CheXpertAdapter
from .fracatlas import FracAtlasAdapter
from .generic_csv import GenericCsvAdapter, GenericFractureCsvAdapter
from .mimic_cxr import MimicCxrAdapter
from .openi import OpenIAdapter, OpenIFractureAdapter
from .vindr_cxr import VinDrCxrAdapter

__all__ = ["ADAPTERS", "get_adapter"]

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
