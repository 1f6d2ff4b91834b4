from .aals import LabelSharpening, asymmetric_label_sharpening
from .annealing import CyclicalAnnealingSchedule
from .masked_map import MaskedMapLoss, SupportWeightedBCEWithLogitsLoss, masked_map_mean
from .vkd import VKDLoss, kl_diagonal_gaussians
