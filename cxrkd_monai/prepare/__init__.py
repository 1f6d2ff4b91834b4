"""Offline data preparation: each dataset adapter turns one public dataset (or a hospital CSV) into a bundle
datalist, with its labels harmonised, its report text cleaned and its split drawn per patient.

``ADAPTERS`` maps the name used by ``cxrkd prepare <dataset>`` to the adapter class; classification adapters
write VKD items, fracture adapters write AALS items. :func:`run_prepare` runs one adapter. A training run reads
the written datalist through :mod:`cxrkd_monai.data`; nothing here runs during training.
"""

from __future__ import annotations

from .base import ClassificationAdapter, DatasetAdapter, DatasetFormatError, PrepareSummary, Record, summary_path
from .chestx_det10 import ChestXDet10Adapter
from .chexpert import CheXpertAdapter
from .fracatlas import FracAtlasAdapter
from .generic_csv import GenericCsvAdapter, GenericFractureCsvAdapter
from .labels import CHEXPERT_CLASSES, FRACTURE_CLASSES, LabelHarmoniser
from .mimic_cxr import MimicCxrAdapter
from .openi import OpenIAdapter, OpenIFractureAdapter
from .registry import ADAPTERS, get_adapter
from .reports import clean_report, extract_findings_impression, report_from_sections
from .run import adapter_options, run_prepare
from .splits import SPLIT_NAMES, assign_splits, split_patients
from .vindr_cxr import VinDrCxrAdapter, fuse_reader_boxes

__all__ = [
    "ADAPTERS",
    "CHEXPERT_CLASSES",
    "FRACTURE_CLASSES",
    "SPLIT_NAMES",
    "CheXpertAdapter",
    "ChestXDet10Adapter",
    "ClassificationAdapter",
    "DatasetAdapter",
    "DatasetFormatError",
    "FracAtlasAdapter",
    "GenericCsvAdapter",
    "GenericFractureCsvAdapter",
    "LabelHarmoniser",
    "MimicCxrAdapter",
    "OpenIAdapter",
    "OpenIFractureAdapter",
    "PrepareSummary",
    "Record",
    "VinDrCxrAdapter",
    "adapter_options",
    "assign_splits",
    "clean_report",
    "extract_findings_impression",
    "fuse_reader_boxes",
    "get_adapter",
    "report_from_sections",
    "run_prepare",
    "split_patients",
    "summary_path",
]
