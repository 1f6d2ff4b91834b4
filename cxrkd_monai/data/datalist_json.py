"""A datalist file read whole as JSON, with an error that names the place where it is not a datalist's JSON.

The datalist readers (:mod:`cxrkd_monai.data.compact_datalist`, :mod:`cxrkd_monai.data.datalist`) scan the file
in blocks; when a scan fails, :func:`read_datalist_json` reads it again whole to name the byte, line or column.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cxrkd_monai.errors import InvalidDatalistError

__all__ = ["read_datalist_json"]


def read_datalist_json(path: str | Path) -> dict[str, Any]:
    """The top-level JSON object of the datalist at ``path``.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        InvalidDatalistError: the file is not UTF-8 (the byte offset and byte are named), not JSON (line and
            column are named), or not a JSON object.
    """
    datalist_path = Path(path)
    if not datalist_path.is_file():
        raise FileNotFoundError(f"Datalist not found: {datalist_path}")
    raw = datalist_path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        offset = error.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        raise InvalidDatalistError(
            f"Datalist {datalist_path} is not UTF-8 text: byte 0x{raw[offset]:02x} at byte offset {offset} "
            f"({error.reason}). Re-save it as UTF-8."
        ) from None
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidDatalistError(
            f"Datalist {datalist_path} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}."
        ) from None
    except RecursionError:
        raise InvalidDatalistError(f"Datalist {datalist_path} is nested too deeply to be a datalist.") from None
    if not isinstance(content, dict):
        raise InvalidDatalistError(
            f"Datalist {datalist_path} must hold a JSON object with 'training', 'validation', 'test' lists, "
            f"got a JSON {type(content).__name__}."
        )
    return content
