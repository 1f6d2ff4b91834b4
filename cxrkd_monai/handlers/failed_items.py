"""Per-item failures in an evaluator: set aside at each batch, written to ``errors.csv``, turned into an exit code."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from cxrkd_monai.data.failed_items import FAILED_ITEMS_KEY
from cxrkd_monai.utils.atomic_files import write_csv_atomically

__all__ = ["PARTIAL_FAILURE_EXIT_CODE", "FailedItemsWriter", "skip_batches_without_items"]

logger = logging.getLogger(__name__)

PARTIAL_FAILURE_EXIT_CODE = 3
"""Exit status of an inference run in which some images failed and all the others were written."""


class FailedItemsWriter:
    """Collects the ``failed_items`` of every batch and writes them to ``<output_dir>/<filename>.csv``.

    Attach it to an evaluator whose loader collates with :class:`~cxrkd_monai.data.failed_items.DropFailedItems`. At
    ``GET_BATCH_COMPLETED`` it takes ``failed_items`` out of ``engine.state.batch`` (so decollation and the model
    see only the items that loaded) and logs each failure; images that fail after the model (their prediction
    cannot be recorded) come through :meth:`add`, from the :class:`~cxrkd_monai.handlers.PredictionWriter`. At
    ``COMPLETED`` it writes the CSV, columns ``image, reason``, with a header even when nothing failed, so a clean
    run is visibly clean.

    Args:
        output_dir: folder of the CSV (created).
        filename: stem of the CSV.

    Example (a bundle config's ``run``, after the evaluator)::

        "$@failed_items.exit_if_any()"
    """

    def __init__(self, output_dir: str | Path, filename: str = "errors") -> None:
        self.output_dir = Path(output_dir)
        self.filename = filename
        self.failures: list[dict[str, str]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    @property
    def path(self) -> Path:
        """The CSV file."""
        return self.output_dir / f"{self.filename}.csv"

    def _reset(self, engine: Engine) -> None:
        self.failures = []

    def add(self, image: str, reason: str) -> None:
        """Lists one more failed image, e.g. one whose prediction could not be recorded (logged now, written at
        ``COMPLETED``)."""
        logger.warning("Skipped %s: %s", image, reason)
        self.failures.append({"image": image, "reason": reason})

    def _collect(self, engine: Engine) -> None:
        batch = engine.state.batch
        for failure in batch.pop(FAILED_ITEMS_KEY, []) if isinstance(batch, dict) else []:
            self.add(failure["image"], failure["reason"])

    def _write(self, engine: Engine) -> None:
        write_csv_atomically(self.path, self.failures, columns=["image", "reason"])

    def exit_if_any(self) -> None:
        """Ends the process with :data:`PARTIAL_FAILURE_EXIT_CODE` when the last run had failed items.

        Call it after the run has written its outputs (as the last expression of a bundle's ``run``), so that
        ``python -m monai.bundle run`` exits 0 when every image succeeded and 3 when some failed.

        Raises:
            SystemExit: with :data:`PARTIAL_FAILURE_EXIT_CODE`, when any item failed.
        """
        if self.failures:
            logger.error(
                "%d image(s) could not be processed (listed with their reasons in %s.csv); exiting with status %d.",
                len(self.failures),
                self.filename,
                PARTIAL_FAILURE_EXIT_CODE,
            )
            raise SystemExit(PARTIAL_FAILURE_EXIT_CODE)


def skip_batches_without_items(engine: Any, batchdata: dict) -> dict | None:
    """``iteration_update`` for a MONAI evaluator: its own iteration, except for a batch in which every item failed.

    Such a batch holds nothing to predict once :class:`FailedItemsWriter` has taken its ``failed_items``; the
    iteration then returns ``None`` as output, which :class:`~cxrkd_monai.handlers.PredictionWriter` skips.
    """
    if not batchdata:
        return None
    return engine._iteration(engine, batchdata)
