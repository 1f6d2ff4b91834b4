"""Files written atomically (temporary file and ``os.replace``), and values made JSON-safe."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["json_safe", "write_csv_atomically", "write_text_atomically"]


def json_safe(value: Any) -> Any:
    """Plain JSON values: tensors and arrays to lists, NaN to null."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
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
