"""Ignite handlers that write an engine's per-image records and metrics to files (rank 0 only)."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from cxrkd_monai.engines.distributed import is_rank0

__all__ = ["MetricsWriter", "PredictionWriter", "write_csv_atomically", "write_text_atomically"]

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


def write_text_atomically(path: str | Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    A reader sees the old file or the new one, never a half-written one; the folder is created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one temporary name per process: a process writes its files one after the other
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", newline="") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_csv_atomically(path: str | Path, records: Sequence[dict], columns: Sequence[str] | None = None) -> None:
    """Writes ``records`` as CSV rows (header ``columns``, default: every key in first-seen order), atomically.

    Values that are lists or dicts are serialised as JSON strings.
    """
    columns = list(dict.fromkeys(k for r in records for k in r)) if columns is None else list(columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for r in records:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})
    write_text_atomically(path, buffer.getvalue())


class PredictionWriter:
    """Collects one record per image and writes ``<filename>.json`` and ``<filename>.csv`` at completion.

    Args:
        output_dir: folder for the files (created).
        record_fn: ``record_fn(batch, output) -> list[dict]``, given ``engine.state.batch`` and
            ``engine.state.output``, returns one record per image. Values that are lists or dicts are
            kept whole in JSON and serialised as JSON strings in the CSV.
        filename: stem of the two files.

    Both files are written atomically (:func:`write_text_atomically`). An iteration whose output is ``None`` (a
    batch in which every image failed to load, see :func:`~cxrkd_monai.engines.failed_items.skip_batches_without_items`)
    adds no records.
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
        if engine.state.output is None:
            return
        self.records.extend(self.record_fn(engine.state.batch, engine.state.output))

    def _write(self, engine: Engine) -> None:
        if not is_rank0():
            return
        records = [_json_safe(r) for r in self.records]
        write_text_atomically(self.output_dir / f"{self.filename}.json", json.dumps(records, indent=1))
        write_csv_atomically(self.output_dir / f"{self.filename}.csv", records)
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
        write_text_atomically(self.output_dir / self.filename, json.dumps(_json_safe(metrics), indent=1))
