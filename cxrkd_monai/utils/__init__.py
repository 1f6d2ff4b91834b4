"""Low-level helpers every role uses: atomic files, the distributed set-up and rank check, folder locks, the
fracture subset vocabulary, the imports of optional extras."""

from .atomic_files import json_safe, write_csv_atomically, write_text_atomically
from .distributed import init_distributed, is_rank0, local_device, wrap_ddp
from .folder_lock import FolderInUseError, FolderLock
from .fracture_subsets import FRACTURE_SUBSETS, RECORD_NEGATIVE, RECORD_POSITIVE, REGION_ANNOTATED, fracture_subset
from .optional_imports import import_from_extra
