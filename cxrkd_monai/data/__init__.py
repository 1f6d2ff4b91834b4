from .collate import collate_with_annotations
from .compact_datalist import CompactDatalist
from .datalist import check_class_names, load_class_names, load_datalist
from .dataset import ItemNamingCacheDataset
from .embedding_store import EmbeddingStore
from .failed_items import FAILED_ITEMS_KEY, DropFailedItems, FailureTolerantDataset
from .labels import CHEXPERT_CLASSES, FRACTURE_CLASSES, LabelHarmoniser
from .phantom import generate_phantom_dataset
from .preprocessed_cache import (
    CacheBuildReport,
    CachedPreprocessingd,
    PreprocessedCacheDataset,
    build_bundle_cache,
    build_preprocessed_cache,
)
from .reports import clean_report, extract_findings_impression, report_from_sections
from .splits import assign_splits, split_patients
from .text_embedding_cache import TextEmbeddingCache
