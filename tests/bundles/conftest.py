"""Fixtures shared by the bundle workflow tests."""

from collections.abc import Callable
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader


def _processes_with_scalars(log_dir: Path) -> set[str]:
    """Process ids (from the event file names ``events.out.tfevents.<time>.<host>.<pid>.<n>``) that logged values."""
    writers = set()
    for path in Path(log_dir).glob("events.out.tfevents.*"):
        if any(event.summary.value for event in EventFileLoader(str(path)).Load()):
            writers.add(path.name.split(".")[-2])
    return writers


@pytest.fixture
def tensorboard_writers() -> Callable[[Path], set[str]]:
    """``tensorboard_writers(log_dir)``: the processes whose TensorBoard event files in ``log_dir`` hold values.

    Under DDP every rank builds the config's components, rank-0-only logging handlers included (an unused
    TensorBoard writer leaves an event file with no values); only rank 0 attaches and so logs them.
    """
    return _processes_with_scalars
