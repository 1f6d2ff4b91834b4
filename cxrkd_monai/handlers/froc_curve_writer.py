"""Ignite handler that writes the FROC curves of a :class:`~cxrkd_monai.handlers.FROCScore` to CSV (rank 0)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from ignite.engine import Engine, Events

from cxrkd_monai.handlers.froc_score import FROCScore
from cxrkd_monai.metrics.froc import froc_curve_rows
from cxrkd_monai.utils.distributed import is_rank0

__all__ = ["FROCCurveWriter"]

logger = logging.getLogger(__name__)


class FROCCurveWriter:
    """Writes the FROC curves of a :class:`FROCScore` to ``output_dir/filename`` (CSV) at completion, rank 0.

    One row per fracture type and curve point, as :func:`~cxrkd_monai.metrics.froc_curve_rows` gives
    them. Attach it to the evaluator that runs ``froc_metric``.

    Args:
        froc_metric: the evaluator's :class:`FROCScore`.
        output_dir: folder of the CSV (created).
        filename: name of the CSV.
    """

    def __init__(self, froc_metric: FROCScore, output_dir: str, filename: str = "froc_curve.csv") -> None:
        self.froc_metric = froc_metric
        self.output_path = Path(output_dir) / filename

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not is_rank0():
            return
        if not self.froc_metric.result:
            raise RuntimeError("FROCCurveWriter: the FROC metric has not been computed on this engine.")
        rows = froc_curve_rows(self.froc_metric.result)
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.output_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
            writer.writeheader()
            writer.writerows(rows)
        logger.info("Wrote the FROC curve (%d rows) to %s", len(rows), self.output_path)
