"""Epoch-level scalars of a training run, read back from its TensorBoard event files.

The fracture bundle's stage-2 trainer records its sharpening statistics per epoch (``pseudo_positive_rate``,
``dp_raised_fraction``, ``dp_positive_area``, see :class:`~cxrkd_monai.handlers.PseudoPositiveRate`) through MONAI's
``TensorBoardStatsHandler`` in its ``output_dir``; the report plots them over the epochs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["SHARPENING_SCALARS", "read_epoch_scalars"]

SHARPENING_SCALARS = {
    "pseudo_positive_rate": "pseudo-positive rate (D_P findings with a target peak above 0.5)",
    "dp_raised_fraction": "D_P pixels raised above the teacher",
    "dp_positive_area": "D_P map area above 0.5",
}
"""The stage-2 scalars the report plots, with their legend labels."""


def read_epoch_scalars(log_dir: str | Path, tags: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(epoch, value), ...]}`` for the ``tags`` found in ``log_dir``'s event files (last write per epoch).

    Raises:
        FileNotFoundError: ``log_dir`` holds no ``events.out.tfevents.*`` file.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(Path(log_dir).glob("events.out.tfevents.*"))
    if not files:
        raise FileNotFoundError(f"No TensorBoard event files in {str(log_dir)!r}.")
    scalars: dict[str, dict[int, float]] = {}
    for events in files:
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in set(accumulator.Tags()["scalars"]) & set(tags):
            for event in accumulator.Scalars(tag):
                scalars.setdefault(tag, {})[int(event.step)] = float(event.value)
    return {tag: sorted(scalars[tag].items()) for tag in tags if tag in scalars}
