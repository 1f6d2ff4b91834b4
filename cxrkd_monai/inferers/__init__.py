"""Inferers: Monte Carlo sampling of the VKD image-only prior."""

from .monte_carlo import MonteCarloPriorInferer
