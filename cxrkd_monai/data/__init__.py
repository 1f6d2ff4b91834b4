from .datalist import load_class_names, load_datalist
from .collate import collate_with_annotations
from .text_embedding_cache import TextEmbeddingCache
