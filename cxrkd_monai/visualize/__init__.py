"""Looking at what the models do: saliency maps, overlays and TensorBoard views of radiographs."""

from cxrkd_monai.visualize.overlay import heat_colours, saliency_overlay, saliency_to_png_array
from cxrkd_monai.visualize.saliency import (
    DEFAULT_TARGET_LAYER,
    SALIENCY_METHODS,
    SALIENCY_TARGET_LAYERS,
    VKDSaliency,
    explain_radiograph,
    scale_to_unit_peak,
)
from cxrkd_monai.visualize.tensorboard import upright_from_engine

__all__ = [
    "DEFAULT_TARGET_LAYER",
    "SALIENCY_METHODS",
    "SALIENCY_TARGET_LAYERS",
    "VKDSaliency",
    "explain_radiograph",
    "heat_colours",
    "saliency_overlay",
    "saliency_to_png_array",
    "scale_to_unit_peak",
    "upright_from_engine",
]
