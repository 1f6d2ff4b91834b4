from .auroc import MultiLabelAUROC, MultiLabelAUROCMetric, per_class_auroc
from .froc import FROCMetric, find_peaks, froc_curve_rows, peaks_to_grid
