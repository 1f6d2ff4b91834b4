from .geometry import Letterboxd, LetterboxGeometry
from .validation import ValidateVKDItemd
from .fracture_annotations import SUBSETS, EncodeFractureAnnotationsd
from .target_maps import FractureTargetMapd
