from .auroc import MultiLabelAUROC, MultiLabelAUROCMetric, per_class_auroc
from .calibration import MultiLabelECE, MultiLabelECEMetric, expected_calibration_error
from .froc import FROCMetric, find_peaks, froc_curve_rows, peaks_to_grid
