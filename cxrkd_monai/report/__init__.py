"""Evaluation reports: one self-contained HTML page per run, with confidence intervals, curves and failure images."""

from .command import write_report
from .run_outputs import EvaluationRun, RunOutputError, load_evaluation_run
from .settings import ReportSettings, resolve_settings

__all__ = [
    "EvaluationRun",
    "ReportSettings",
    "RunOutputError",
    "load_evaluation_run",
    "resolve_settings",
    "write_report",
]
