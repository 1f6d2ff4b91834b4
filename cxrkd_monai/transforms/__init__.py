from .calibration import (
    CALIBRATION_FILENAME,
    CalibrateProbabilitiesd,
    Calibration,
    calibration_file_beside,
    temperature_scale,
)
from .detection import (
    annotations_to_original,
    detect_in_original_pixels,
    find_peaks,
    map_pixel_half_diagonal,
    output_stride_of,
    peaks_to_grid,
)
from .device_augmentation import BatchAugmentd
from .fracture_annotations import EncodeFractureAnnotationsd
from .geometry import Letterboxd, LetterboxGeometry
from .io import IntensityRangeWarning, LoadCXR, LoadCXRd, PhotometricMismatchWarning, UnreadableImageError
from .label_mask import EnsureLabelMaskd
from .target_maps import FractureTargetMapd
from .validation import ValidateVKDItemd
