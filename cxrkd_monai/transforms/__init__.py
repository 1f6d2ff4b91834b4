from .calibration import (
    CALIBRATION_FILENAME,
    CalibrateProbabilitiesd,
    Calibration,
    OperatingPointCalls,
    calibration_file_beside,
    fp_rate_key,
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
from .image_score import ImageScored, image_area_mask, image_scores
from .io import IntensityRangeWarning, LoadCXR, LoadCXRd, PhotometricMismatchWarning, UnreadableImageError
from .label_mask import EnsureLabelMaskd
from .target_maps import FractureTargetMapd
from .validation import ValidateVKDItemd
