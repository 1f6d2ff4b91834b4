from .fracture_annotations import SUBSETS, EncodeFractureAnnotationsd
from .geometry import Letterboxd, LetterboxGeometry
from .io import IntensityRangeWarning, LoadCXR, LoadCXRd, PhotometricMismatchWarning, UnreadableImageError
from .label_mask import EnsureLabelMaskd
from .target_maps import FractureTargetMapd
from .validation import ValidateVKDItemd
