"""A datalist split held as byte spans of its file: memory that does not grow with the items' content.

A MONAI datalist of a MIMIC-CXR-sized archive is a JSON file of tens of megabytes (a report is hundreds of bytes).
Parsed whole, every item becomes a Python dict, several times the file's size, and a bundle's config parser keeps
them for the whole run. :func:`scan_datalist_split` instead reads the file in blocks and decodes one item at a time,
so that at no point more than one block and one item are in memory; :class:`CompactDatalist` keeps only where each
item lies in the file (16 bytes an item) and decodes it again when the dataset asks for it.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, overload

import numpy as np

from cxrkd_monai.data.datalist_json import read_datalist_json
from cxrkd_monai.errors import InvalidDatalistError

__all__ = ["CompactDatalist", "DatalistEntry", "read_datalist_value", "scan_datalist_split"]

_BLOCK_BYTES = 1 << 20
_NON_WHITESPACE = re.compile(r"[^ \t\n\r]")
_DECODER = json.JSONDecoder()

DatalistEntry = tuple[int, int, Any]
"""``(byte offset, byte length, decoded JSON value)`` of one item of a datalist split."""


class _BlockReader:
    """A UTF-8 JSON text read in blocks, keeping the byte offset in the file of every character it hands out."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("rb")
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.position = 0  # character position in ``text``
        # the byte offset in the file of ``text[marker_char]``; offsets are counted forward from it
        self.marker_char, self.marker_byte = 0, 0
        self.at_end = False
        if self.file.read(3) == b"\xef\xbb\xbf":  # a byte-order mark is skipped, as utf-8-sig does
            self.marker_byte = 3
        else:
            self.file.seek(0)

    def close(self) -> None:
        self.file.close()

    def byte_offset(self, char_position: int) -> int:
        """The file offset of ``text[char_position]``; positions must be asked for in increasing order."""
        self.marker_byte += len(self.text[self.marker_char : char_position].encode("utf-8"))
        self.marker_char = char_position
        return self.marker_byte

    def _read_block(self) -> bool:
        if self.at_end:
            return False
        block = self.file.read(_BLOCK_BYTES)
        self.at_end = not block
        consumed = self.byte_offset(self.position)
        self.text = self.text[self.position :] + self.decoder.decode(block, final=self.at_end)
        self.position, self.marker_char, self.marker_byte = 0, 0, consumed
        return True

    def peek(self) -> str:
        """The next non-whitespace character, or '' at the end."""
        while True:
            found = _NON_WHITESPACE.search(self.text, self.position)
            if found is not None:
                self.position = found.start()
                return self.text[self.position]
            self.position = len(self.text)
            if not self._read_block():
                return ""

    def expect(self, characters: str) -> str:
        character = self.peek()
        if not character or character not in characters:
            raise ValueError(f"expected one of {characters!r} at byte {self.byte_offset(self.position)}")
        self.position += 1
        return character

    def value(self) -> tuple[int, int, Any]:
        """The next JSON value: its byte offset, byte length and decoded value."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.position)
            except json.JSONDecodeError:
                if self._read_block():
                    continue
                raise
            if end == len(self.text) and not self.at_end and self.text[self.position] not in '[{"':
                self._read_block()  # a bare number may go on in the next block
                continue
            start = self.byte_offset(self.position)
            length = self.byte_offset(end) - start
            self.position = end
            return start, length, value


@contextmanager
def _datalist_reader(path: Path) -> Iterator[_BlockReader]:
    """A reader of the datalist at ``path``; a file that is not a JSON object gets :func:`read_datalist_json`'s
    error, which names the byte, line or column."""
    if not path.is_file():
        raise FileNotFoundError(f"Datalist not found: {path}")
    reader = _BlockReader(path)
    try:
        yield reader
    except InvalidDatalistError:
        raise
    except (ValueError, RecursionError) as error:
        read_datalist_json(path)  # raises, naming the place
        raise InvalidDatalistError(f"Datalist {path} could not be read as a datalist: {error}.") from None
    finally:
        reader.close()


def _top_level_names(reader: _BlockReader) -> Iterator[str]:
    """The keys of the top-level object in order; the caller reads each key's value before asking for the next."""
    reader.expect("{")
    count = 0
    while reader.peek() != "}":
        if count:
            reader.expect(",")
        _, _, name = reader.value()
        if not isinstance(name, str):
            raise ValueError("object keys must be strings")
        reader.expect(":")
        count += 1
        yield name
    reader.expect("}")
    if reader.peek():
        raise ValueError("extra data after the datalist object")


def _list_items(reader: _BlockReader) -> Iterator[DatalistEntry]:
    reader.expect("[")
    first = True
    while reader.peek() != "]":
        if not first:
            reader.expect(",")
        first = False
        yield reader.value()
    reader.expect("]")


def _skip_value(reader: _BlockReader) -> None:
    """Read past the next value; a list item by item."""
    if reader.peek() == "[":
        for _ in _list_items(reader):
            pass
    else:
        reader.value()


def scan_datalist_split(path: str | Path, key: str) -> Iterator[DatalistEntry]:
    """Yield each item of the list under ``key`` in the datalist at ``path``, one decoded at a time.

    The other entries of the top-level object are read and dropped item by item too, so a large ``validation`` list
    costs no more memory than a small one.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        InvalidDatalistError: as :func:`~cxrkd_monai.data.datalist_json.read_datalist_json` (not UTF-8, not JSON, not an
            object: the file is then read whole to name the place), or no list under ``key``.
    """
    datalist_path = Path(path)
    keys, found = [], False
    with _datalist_reader(datalist_path) as reader:
        for name in _top_level_names(reader):
            keys.append(name)
            if name != key:
                _skip_value(reader)
            elif reader.peek() != "[":
                raise InvalidDatalistError(
                    f"Datalist {datalist_path} '{key}' must be a list of items, got a JSON "
                    f"{_json_type_name(reader.value()[2])}."
                )
            else:
                found = True
                yield from _list_items(reader)
    if not found:
        raise InvalidDatalistError(f"Datalist {datalist_path} has no '{key}' list (keys: {sorted(keys)}).")


def read_datalist_value(path: str | Path, key: str, default: Any = None) -> Any:
    """The value under the top-level ``key`` of the datalist at ``path`` (``default`` without one), read without
    decoding the item lists before it as a whole (e.g. ``class_names`` of a datalist of hundreds of megabytes).

    Raises:
        FileNotFoundError, InvalidDatalistError: as :func:`scan_datalist_split`.
    """
    with _datalist_reader(Path(path)) as reader:
        for name in _top_level_names(reader):
            if name == key:
                return reader.value()[2]
            _skip_value(reader)
    return default


def _json_type_name(value: Any) -> str:
    return {dict: "dict", str: "str", bool: "bool", int: "int", float: "float", type(None): "NoneType"}.get(
        type(value), type(value).__name__
    )


class CompactDatalist(Sequence[dict]):
    """The checked items of one datalist split, decoded from their file on access.

    It keeps the datalist's path, its size and modification time at the scan, and each kept item's byte span
    (two ``int64`` per item); ``finish`` turns the decoded JSON value into the item the pipelines see (the image
    path joined to the datalist's folder, ...), exactly as the eager loader does. Items are new dicts at every
    access. It pickles small, so ``DataLoader`` workers and DDP ranks get it cheaply.

    Args:
        path: the datalist file.
        spans: ``(N, 2)`` byte offsets and lengths of the kept items.
        finish: ``finish(value, index)`` -> item, for the decoded JSON value of item ``index`` of the split.
        indices: ``(N,)`` the kept items' positions in the split (for ``finish`` and error messages).

    Raises:
        InvalidDatalistError: on access, when the file changed since the scan (its size or modification time).
    """

    def __init__(
        self,
        path: str | Path,
        spans: np.ndarray,
        finish: Callable[[Any, int], dict],
        indices: np.ndarray,
    ) -> None:
        self.path = Path(path)
        stat = os.stat(self.path)
        self.stamp = (stat.st_size, stat.st_mtime_ns)
        self.spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.finish = finish

    def __len__(self) -> int:
        return len(self.spans)

    @overload
    def __getitem__(self, index: int) -> dict: ...

    @overload
    def __getitem__(self, index: slice) -> CompactDatalist: ...

    def __getitem__(self, index: int | slice) -> dict | CompactDatalist:
        if isinstance(index, slice):
            view = object.__new__(CompactDatalist)
            view.path, view.stamp, view.finish = self.path, self.stamp, self.finish
            view.spans, view.indices = self.spans[index], self.indices[index]
            return view
        position = range(len(self))[index]  # IndexError and negative indices as a list has them
        offset, length = (int(v) for v in self.spans[position])
        stat = os.stat(self.path)
        if (stat.st_size, stat.st_mtime_ns) != self.stamp:
            raise InvalidDatalistError(
                f"Datalist {self.path} changed after it was loaded; load it again (restart the run)."
            )
        with self.path.open("rb") as file:
            file.seek(offset)
            raw = file.read(length)
        return self.finish(json.loads(raw.decode("utf-8")), int(self.indices[position]))

    def __iter__(self) -> Iterator[dict]:
        for position in range(len(self)):
            yield self[position]
