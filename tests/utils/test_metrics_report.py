import math

import pytest
import torch
from monai.handlers.utils import write_metrics_reports

from cxrkd_monai.utils.metrics_report import read_metrics_report


def test_reads_back_what_metrics_saver_writes(tmp_path):
    metrics = {
        "val_macro_auroc": 0.7123456789012345,
        "val_macro_auroc_Fracture, rib": 1 / 3,
        "ece": float(torch.tensor(0.1, dtype=torch.float32)),
        "undefined": math.nan,
    }
    write_metrics_reports(str(tmp_path), images=None, metrics=metrics, metric_details=None, summary_ops=None)
    read = read_metrics_report(tmp_path / "metrics.csv")
    assert list(read) == list(metrics)
    assert [read[k] for k in list(metrics)[:3]] == [metrics[k] for k in list(metrics)[:3]]  # exact floats
    assert math.isnan(read["undefined"])


def test_a_line_that_is_not_a_metric_names_the_file_and_line(tmp_path):
    report = tmp_path / "metrics.csv"
    report.write_text("auroc,0.5\nauroc_per_class,{'a': 0.5}\n")
    with pytest.raises(ValueError, match=r"metrics.csv, line 2"):
        read_metrics_report(report)
