"""Ignite event handlers: checkpoints and resume, guards, writers, the ONNX Runtime backend, schedules, and the metric
handlers that wrap the computations of :mod:`cxrkd_monai.metrics` (AUROC, F1, ECE, FROC score, pseudo-positive rate)."""

from .bootstrap_intervals import BootstrapIntervals
from .calibration_fitter import CalibrationFitter
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
from .froc_score import FROCScore
from .masked_multilabel import MaskedMultiLabelHandler
from .metrics_writer import MetricsWriter
from .multilabel_auroc import MultiLabelAUROC
from .multilabel_ece import MultiLabelECE
from .multilabel_f1 import MultiLabelF1
from .onnx_backend import BACKENDS, OnnxRuntimeBackend
from .output_folder import InferenceOutputFolder
from .prediction_writer import PredictionWriter
from .pseudo_positive_rate import PseudoPositiveRate, dp_maps
from .saliency_writer import SaliencyWriter
from .vkd_prediction_records import VKDPredictionRecords
