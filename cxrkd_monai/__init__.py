"""Knowledge distillation for chest X-rays (VKD classification, AALS fracture detection) as MONAI bundles."""

from . import data, engines, losses, metrics, networks, transforms

__version__ = "0.1.0"
