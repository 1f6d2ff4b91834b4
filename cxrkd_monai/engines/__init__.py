"""Ignite/MONAI trainers of both bundles and their batch preparation."""

from .device_augmentation import AugmentingPrepareBatch
from .mixed_precision import autocast_for, backward_and_step
from .prepare_batch import PrepareFractureBatch, hard_target_maps
from .teacher_student import SHARPENING_MODES, TeacherStudentTrainer, load_stage1_weights
from .text_batch import PrepareTextBatch
from .vkd_trainer import VKDTrainer, VKDTrainingStep
