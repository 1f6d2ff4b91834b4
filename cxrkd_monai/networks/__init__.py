from .fracture_fpn import FractureFPN
