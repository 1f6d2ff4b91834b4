from .fracture_fpn import FractureFPN
from .onnx_runtime_module import OnnxRuntimeModule, export_to_onnxruntime
from .text_encoder import MeanPoolingTextEncoder
from .vkd import DiagonalGaussianHead, VKDNet, VKDOutput
