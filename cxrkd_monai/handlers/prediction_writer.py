"""Ignite handler that writes an engine's per-image records to JSON and CSV files (rank 0 only)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from cxrkd_monai.utils.atomic_files import json_safe, write_csv_atomically, write_text_atomically
from cxrkd_monai.utils.distributed import is_rank0

__all__ = ["PredictionWriter"]

logger = logging.getLogger(__name__)


class PredictionWriter:
    """Collects one record per image and writes ``<filename>.json`` and ``<filename>.csv`` at completion.

    Args:
        output_dir: folder for the files (created).
        record_fn: ``record_fn(batch, output) -> list[dict]``, given ``engine.state.batch`` and
            ``engine.state.output``, returns one record per image. Values that are lists or dicts are
            kept whole in JSON and serialised as JSON strings in the CSV.
        filename: stem of the two files.

    Both files are written atomically (:func:`write_text_atomically`). An iteration whose output is ``None`` (a
    batch in which every image failed to load, see :func:`~cxrkd_monai.handlers.skip_batches_without_items`)
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
        records = [json_safe(r) for r in self.records]
        write_text_atomically(self.output_dir / f"{self.filename}.json", json.dumps(records, indent=1))
        write_csv_atomically(self.output_dir / f"{self.filename}.csv", records)
        logger.info("Wrote %d records to %s/%s.{json,csv}", len(records), self.output_dir, self.filename)
