"""Evaluation reports: one self-contained HTML page per run, with confidence intervals, curves and failure images.

The reports need matplotlib and Jinja2 (extra ``report``); importing this package without them names the extra.
"""

from cxrkd_monai.utils.optional_imports import import_from_extra

import_from_extra("matplotlib", "report", "The HTML evaluation report")
import_from_extra("jinja2", "report", "The HTML evaluation report")

# after the check above, so that a missing extra is named
from .command import write_report  # noqa: E402
from .run_outputs import EvaluationRun, RunOutputError, load_evaluation_run  # noqa: E402
from .settings import ReportSettings, resolve_settings  # noqa: E402

__all__ = [
    "EvaluationRun",
    "ReportSettings",
    "RunOutputError",
    "load_evaluation_run",
    "resolve_settings",
    "write_report",
]
