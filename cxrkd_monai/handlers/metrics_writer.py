"""Ignite handler that writes an engine's metrics to a JSON file (rank 0 only)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from ignite.engine import Engine, Events

from cxrkd_monai.utils.atomic_files import json_safe, write_text_atomically
from cxrkd_monai.utils.distributed import is_rank0

__all__ = ["MetricsWriter"]

logger = logging.getLogger(__name__)


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
        write_text_atomically(self.output_dir / self.filename, json.dumps(json_safe(metrics), indent=1))
