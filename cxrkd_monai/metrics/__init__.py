from .auroc import AUROC_AVERAGES, MultiLabelAUROCMetric, micro_auroc, per_class_auroc
from .bootstrap import (
    BootstrapInterval,
    auroc_difference_intervals,
    auroc_intervals,
    auroc_summary,
    bootstrap_interval,
    bootstrap_intervals,
    bootstrap_metric,
    bootstrap_metric_difference,
    paired_patient_bootstrap_difference,
    patient_bootstrap_interval,
    resample_indices,
)
from .calibration import MultiLabelECEMetric, expected_calibration_error
from .calibration_fitting import fit_calibration
from .f1 import F1_AVERAGES, MultiLabelF1Metric, micro_f1, per_class_f1
from .froc import FROCMetric, froc_curve_rows
from .masked import MaskedMultiLabelMetric, observed_entries
from .operating_points import (
    OPERATING_POINT_RULES,
    LesionOperatingPoint,
    OperatingPoint,
    select_lesion_operating_point,
    select_operating_point,
    select_operating_points,
)
from .temperature_scaling import TemperatureFit, binary_nll, fit_temperature
