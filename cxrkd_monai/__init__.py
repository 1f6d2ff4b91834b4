"""Knowledge distillation for chest X-rays (VKD classification, AALS fracture detection) as MONAI bundles."""

from . import (
    bundle,
    data,
    engines,
    handlers,
    inferers,
    losses,
    metrics,
    networks,
    phantom,
    prepare,
    transforms,
    utils,
    visualize,
)

__version__ = "0.1.0"
