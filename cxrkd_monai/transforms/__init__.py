from .geometry import Letterboxd, LetterboxGeometry
from .validation import ValidateVKDItemd
