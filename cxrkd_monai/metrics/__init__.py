from .auroc import MultiLabelAUROC, MultiLabelAUROCMetric, per_class_auroc
