"""Inferers: Monte Carlo sampling of the VKD image-only prior, and VKD's posterior and prior paths side by side."""

from .monte_carlo import MonteCarloPriorInferer, image_seeds, per_image_noise
from .vkd_paths import PosteriorPriorInferer
