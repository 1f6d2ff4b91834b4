from .checkpointing import (
    AtomicCheckpointSaver,
    BestMetricState,
    GradScalerState,
    RandomStates,
    find_last_checkpoint,
    refuse_to_overwrite,
)
from .distributed import init_distributed, is_rank0, local_device, wrap_ddp
from .handlers import AttributeScheduleHandler
from .onnx_backend import BACKENDS, OnnxRuntimeBackend, OnnxRuntimeModule, export_to_onnxruntime
from .vkd_inference import MonteCarloPriorInferer, VKDPredictionRecords
from .vkd_trainer import VKDTrainer, VKDTrainingStep
from .writers import MetricsWriter, PredictionWriter
