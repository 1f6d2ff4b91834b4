"""The output folder of an inference run: locked, filled in one step at the end, earlier outputs kept aside."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from ignite.engine import Engine

from cxrkd_monai.utils.folder_lock import FolderLock

__all__ = ["InferenceOutputFolder"]

logger = logging.getLogger(__name__)


class InferenceOutputFolder:
    """Runs an engine so that its outputs appear together in ``output_dir`` and never mix with another run's.

    :meth:`run` does, in order:

    1. locks ``output_dir`` (:class:`~cxrkd_monai.utils.FolderLock`): a second run into the same
       folder stops with :class:`~cxrkd_monai.utils.FolderInUseError` before touching anything;
    2. moves everything a previous run left in ``output_dir`` into ``previous/<YYYYmmdd-HHMMSS>/`` (the time of
       its newest entry), so no earlier ``predictions.csv`` can pass for this run's;
    3. runs the engine, whose writers write into :attr:`staging_dir` (``output_dir/.incomplete``);
    4. when the engine completes, moves the staged entries into ``output_dir`` (folders such as ``maps/`` first,
       then the files that list them); when it raises, deletes the staged entries, so a failed run leaves no
       maps without their CSV;
    5. releases the lock.

    Args:
        output_dir: the folder that receives the outputs (created).
        previous_dir_name: subfolder of ``output_dir`` that keeps earlier runs' outputs.

    Example (bundle config)::

        "inference_output": {
            "_target_": "cxrkd_monai.handlers.InferenceOutputFolder",
            "output_dir": "@output_dir"
        },
        "handlers": [
            {"_target_": "cxrkd_monai.handlers.PredictionWriter", "output_dir": "$@inference_output.staging_dir", ...}
        ],
        "run": ["$@inference_output.run(@evaluator)"]
    """

    staging_name = ".incomplete"

    def __init__(self, output_dir: str | Path, previous_dir_name: str = "previous") -> None:
        self.output_dir = Path(output_dir)
        self.previous_dir = self.output_dir / previous_dir_name
        self.staging_dir = self.output_dir / self.staging_name
        self.lock = FolderLock(self.output_dir)

    def run(self, engine: Engine) -> None:
        """Runs ``engine`` (``engine.run()``) into :attr:`staging_dir` and publishes its outputs (steps 1-5)."""
        with self.lock:
            self._set_aside_previous_outputs()
            shutil.rmtree(self.staging_dir, ignore_errors=True)
            self.staging_dir.mkdir()
            try:
                engine.run()
            except BaseException:
                shutil.rmtree(self.staging_dir, ignore_errors=True)
                raise
            self._publish()

    def _own_entries(self) -> set[str]:
        return {self.lock.path.name, self.staging_dir.name, self.previous_dir.name}

    def _set_aside_previous_outputs(self) -> None:
        previous = [entry for entry in self.output_dir.iterdir() if entry.name not in self._own_entries()]
        if not previous:
            return
        newest = max(entry.stat().st_mtime for entry in previous)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(newest))
        target, suffix = self.previous_dir / stamp, 1
        while target.exists():
            suffix += 1
            target = self.previous_dir / f"{stamp}-{suffix}"
        target.mkdir(parents=True)
        for entry in previous:
            os.replace(entry, target / entry.name)
        logger.info("Moved the previous outputs of %s to %s", self.output_dir, target)

    def _publish(self) -> None:
        entries = sorted(self.staging_dir.iterdir(), key=lambda entry: (not entry.is_dir(), entry.name))
        for entry in entries:
            os.replace(entry, self.output_dir / entry.name)
        self.staging_dir.rmdir()
        if entries:
            logger.info("Wrote %s to %s", ", ".join(entry.name for entry in entries), self.output_dir)
        else:
            logger.warning("The run wrote no outputs to %s", self.output_dir)
