from .fracture_fpn import FractureFPN
from .text_encoder import MeanPoolingTextEncoder
from .vkd import DiagonalGaussianHead, VKDNet, VKDOutput
