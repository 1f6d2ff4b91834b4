"""Ignite handler that writes an engine's per-image records to JSON and CSV files (rank 0 only)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from cxrkd_monai.handlers.failed_items import FailedItemsWriter
from cxrkd_monai.transforms.failures import FAILURE_KEY
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
        failed_items: the run's :class:`~cxrkd_monai.handlers.FailedItemsWriter`. A record that ``record_fn``
            returns as ``{"image": <path>, "failure": <reason>}`` (an image it could not record) is listed there,
            for ``errors.csv`` and exit status 3, while the other images keep their records; without it, such a
            record stops the run with a ``RuntimeError`` naming the image and the reason.

    Both files are written atomically (:func:`write_text_atomically`). An iteration whose output is ``None`` (a
    batch in which every image failed to load, see :func:`~cxrkd_monai.handlers.skip_batches_without_items`)
    adds no records.
    """

    def __init__(
        self,
        output_dir: str,
        record_fn: Callable[[Any, Any], list[dict]],
        filename: str = "predictions",
        failed_items: FailedItemsWriter | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.record_fn = record_fn
        self.filename = filename
        self.failed_items = failed_items
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
        for record in self.record_fn(engine.state.batch, engine.state.output):
            if FAILURE_KEY not in record:
                self.records.append(record)
            elif self.failed_items is not None:
                self.failed_items.add(record["image"], record[FAILURE_KEY])
            else:
                raise RuntimeError(f"The prediction of {record['image']} could not be recorded: {record[FAILURE_KEY]}")

    def _write(self, engine: Engine) -> None:
        if not is_rank0():
            return
        records = [json_safe(r) for r in self.records]
        write_text_atomically(self.output_dir / f"{self.filename}.json", json.dumps(records, indent=1))
        write_csv_atomically(self.output_dir / f"{self.filename}.csv", records)
        logger.info("Wrote %d records to %s/%s.{json,csv}", len(records), self.output_dir, self.filename)
