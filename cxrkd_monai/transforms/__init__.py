from .geometry import LetterboxGeometry, Letterboxd
from .validation import ValidateVKDItemd
