"""Ignite/MONAI trainers of both bundles and their batch preparation."""

from .device_augmentation import AugmentingPrepareBatch
from .mixed_precision import autocast_for, backward_and_step
from .prepare_batch import PrepareFractureBatch
from .teacher_student import SHARPENING_MODES, TeacherStudentTrainer, load_stage1_weights, masked_map_mean
from .vkd_trainer import VKDTrainer, VKDTrainingStep
