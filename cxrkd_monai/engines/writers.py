"""Ignite handlers that write an engine's per-image records and metrics to files (rank 0 only)."""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from cxrkd_monai.engines.distributed import is_rank0

__all__ = ["MetricsWriter", "PredictionWriter"]

logger = logging.getLogger(__name__)


def _json_safe(value: Any) -> Any:
    """Plain JSON values: tensors and arrays to lists, NaN to null."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class PredictionWriter:
    """Collects one record per image and writes ``<filename>.json`` and ``<filename>.csv`` at completion.

    Args:
        output_dir: folder for the files (created).
        record_fn: ``record_fn(batch, output) -> list[dict]``, given ``engine.state.batch`` and
            ``engine.state.output``, returns one record per image. Values that are lists or dicts are
            kept whole in JSON and serialised as JSON strings in the CSV.
        filename: stem of the two files.
    """

    def __init__(
        self, output_dir: str, record_fn: Callable[[Any, Any], list[dict]], filename: str = "predictions"
    ) -> None:
        self.output_dir = Path(output_dir)
        self.record_fn = record_fn
        self.filename = filename
        self.records: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.records = []

    def _collect(self, engine: Engine) -> None:
        self.records.extend(self.record_fn(engine.state.batch, engine.state.output))

    def _write(self, engine: Engine) -> None:
        if not is_rank0():
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        records = [_json_safe(r) for r in self.records]
        (self.output_dir / f"{self.filename}.json").write_text(json.dumps(records, indent=1))
        columns = list(dict.fromkeys(k for r in records for k in r))
        with open(self.output_dir / f"{self.filename}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for r in records:
                writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})
        logger.info("Wrote %d records to %s/%s.{json,csv}", len(records), self.output_dir, self.filename)


class MetricsWriter:
    """Writes ``engine.state.metrics`` (plus ``extra()``, if given) to ``output_dir/filename`` as JSON."""

    def __init__(
        self, output_dir: str, filename: str = "metrics.json", extra: Callable[[], dict] | None = None
    ) -> None:
        self.output_dir = Path(output_dir)
        self.filename = filename
        self.extra = extra

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not is_rank0():
            return
        metrics = dict(engine.state.metrics)
        if self.extra is not None:
            metrics.update(self.extra())
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / self.filename).write_text(json.dumps(_json_safe(metrics), indent=1))
