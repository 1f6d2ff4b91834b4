from .auroc import AUROC_AVERAGES, MultiLabelAUROC, MultiLabelAUROCMetric, micro_auroc, per_class_auroc
from .calibration import MultiLabelECE, MultiLabelECEMetric, expected_calibration_error
from .f1 import F1_AVERAGES, MultiLabelF1, MultiLabelF1Metric, micro_f1, per_class_f1
from .froc import FROCMetric, froc_curve_rows
from .froc_score import FROCScore
from .masked import MaskedMultiLabelHandler, MaskedMultiLabelMetric, observed_entries
from .pseudo_positive_rate import PseudoPositiveRate
