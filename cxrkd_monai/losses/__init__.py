from .aals import LabelSharpening, asymmetric_label_sharpening
from .annealing import CyclicalAnnealingSchedule
from .vkd import VKDLoss, kl_diagonal_gaussians
