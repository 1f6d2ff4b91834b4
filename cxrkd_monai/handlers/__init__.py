"""Ignite event handlers: checkpoints and resume, guards, writers, the ONNX Runtime backend, schedules."""

from .bootstrap_intervals import BootstrapIntervals
from .calibration_fitter import CalibrationFitter, fit_calibration
from .checkpointing import (
    AtomicCheckpointSaver,
    BestMetricState,
    GradScalerState,
    RandomStates,
    ReplacingDiskSaver,
    find_last_checkpoint,
    refuse_to_overwrite,
)
from .failed_items import PARTIAL_FAILURE_EXIT_CODE, FailedItemsWriter, skip_batches_without_items
from .finite_loss import FiniteLossGuard, batch_file_names
from .fracture_prediction_recorder import FracturePredictionRecorder, map_file_name
from .froc_curve_writer import FROCCurveWriter
from .metrics_writer import MetricsWriter
from .onnx_backend import BACKENDS, OnnxRuntimeBackend, OnnxRuntimeModule, export_to_onnxruntime
from .output_folder import InferenceOutputFolder
from .prediction_writer import PredictionWriter
from .saliency_writer import SaliencyWriter
from .vkd_prediction_records import VKDPredictionRecords
