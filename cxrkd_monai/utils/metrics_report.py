"""Reading the metrics report that MONAI's :class:`~monai.handlers.MetricsSaver` writes (``metrics.csv``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["read_metrics_report"]


def read_metrics_report(path: str | Path, delimiter: str = ",") -> dict[str, float]:
    """The metrics of a ``metrics.csv`` written by :class:`~monai.handlers.MetricsSaver`, as ``{name: value}``.

    The file holds one ``name<delimiter>value`` line per metric (``str(value)``, so every float reads back
    exactly, ``nan`` included). A name may itself contain the delimiter (a class name such as
    ``"Fracture, rib"`` in a per-class metric): the value is what follows the last one.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a line without a delimiter or whose value is not a number, naming the file and line.
    """
    path = Path(path)
    metrics = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        name, separator, value = line.rpartition(delimiter)
        try:
            if not separator:
                raise ValueError(f"no '{delimiter}'")
            metrics[name] = float(value)
        except ValueError as error:
            raise ValueError(f"{path}, line {number}: not 'name{delimiter}value' with a number ({line!r}).") from error
    return metrics
