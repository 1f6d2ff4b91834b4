from .cached_preprocessing import CachedPreprocessingd
from .collate import collate_with_annotations
from .compact_datalist import CompactDatalist
from .datalist import check_class_names, load_class_names, load_datalist
from .dataset import ItemNamingCacheDataset
from .embedding_store import EmbeddingStore
from .failed_items import FAILED_ITEMS_KEY, DropFailedItems, FailureTolerantDataset
from .preprocessed_cache_builder import CacheBuildReport, build_bundle_cache, build_preprocessed_cache
from .preprocessed_cache_dataset import PreprocessedCacheDataset
from .text_embedding_cache import TextEmbeddingCache
