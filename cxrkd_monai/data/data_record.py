"""A data-only record format: nested Python values, numpy arrays and torch tensors to bytes and back, bit for bit.

Unlike a pickle, a record cannot name a function or class to call: reading one parses JSON and copies array
bytes, so a record planted by someone else can at worst hold wrong data, never run code. Layout::

    RECORD_MAGIC (8 bytes) | n (uint64) | array table (n bytes of JSON) | m (uint64) | value (m bytes of JSON)
    | array bytes

(lengths little-endian). The array table is ``[[dtype, shape], ...]``; the arrays' bytes follow one after the
other in that order and must fill the rest of the record exactly. The value is a node:

- ``null``, ``true``/``false``, a JSON integer, float (``NaN``/``Infinity`` included; Python writes the shortest
  decimal that reads back to the same float64) or string: that value;
- a JSON array: a ``list`` of nodes;
- an object with one key: ``{"tuple": [nodes]}``, ``{"dict": [[key node, value node], ...]}`` (keys of any
  supported type, insertion order kept), ``{"ndarray": i}``, ``{"scalar": i}`` (a numpy scalar, stored as the 0-d
  array ``i``), ``{"tensor": i}`` (a CPU ``torch.Tensor`` of array ``i``), ``{"bytes": i}``, or
  ``{"enum": [name, value node]}`` for a member of one of MONAI's ``monai.utils.enums`` classes (e.g. the
  ``MetaKeys`` and ``TraceKeys`` keys of an image's metadata and traced operations).

Arrays hold numeric or boolean dtypes only (no object, string or structured dtypes), in either byte order. A
tensor subclass such as ``MetaTensor`` is stored as its plain tensor: store its ``meta`` as a value of its own.
"""

from __future__ import annotations

import enum
import json
import math
from functools import partial
from typing import Any

import monai.utils.enums
import numpy as np
import torch

__all__ = ["RECORD_MAGIC", "RecordFormatError", "decode_data", "encode_data", "is_data_record"]

RECORD_MAGIC = b"\xffCXRKD\x01\n"
"""First bytes of every record. ``0xff`` is no pickle opcode, so a record is never mistaken for a pickle stream
(which starts with ``0x80``, the PROTO opcode), nor the reverse."""

LENGTH_BYTES = 8

ARRAY_DTYPES = {
    dtype.str: dtype
    for name in ("b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16")
    for dtype in (np.dtype(f"<{name}"), np.dtype(f">{name}"))
}
"""The array dtypes a record may hold, by their ``dtype.str`` (e.g. ``"<f4"``); a header naming any other is refused."""

ENUM_TYPES = {
    value.__name__: value
    for value in vars(monai.utils.enums).values()
    if isinstance(value, type) and issubclass(value, enum.Enum) and value.__module__ == monai.utils.enums.__name__
}
"""The enum classes a record may hold, by name: MONAI's own (``MetaKeys``, ``SpaceKeys``, ``TraceKeys``, ...)."""
ENUM_MEMBERS = {(name, member.value): member for name, kind in ENUM_TYPES.items() for member in kind}
"""Every member of :data:`ENUM_TYPES` by ``(class name, value)``: decoding one is a dictionary look-up."""

PLAIN_TYPES = (type(None), bool, int, float, str)
ARRAY_TAGS = ("ndarray", "scalar", "tensor", "bytes")


class RecordFormatError(ValueError):
    """Bytes that are not a well-formed data record (another format, a pickle, or a damaged header)."""


def is_data_record(payload: bytes) -> bool:
    """Whether ``payload`` starts with :data:`RECORD_MAGIC`."""
    return payload[: len(RECORD_MAGIC)] == RECORD_MAGIC


def encode_data(value: Any) -> bytes:
    """The record of ``value``: a nest of ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, lists,
    tuples, dicts, numpy arrays and scalars, torch tensors and MONAI enum members (see the module docstring).

    Raises:
        TypeError: a value of any other type, or an array of an unsupported dtype; the message gives its place,
            e.g. ``value['image_meta']['affine']``.
    """
    arrays: list[np.ndarray] = []
    tree = json.dumps(_encode_node(value, arrays, "value"), separators=(",", ":")).encode()
    table = json.dumps([[array.dtype.str, list(array.shape)] for array in arrays], separators=(",", ":")).encode()
    parts = [RECORD_MAGIC, len(table).to_bytes(LENGTH_BYTES, "little"), table]
    parts += [len(tree).to_bytes(LENGTH_BYTES, "little"), tree, *(array.tobytes(order="C") for array in arrays)]
    return b"".join(parts)


def decode_data(payload: bytes) -> Any:
    """The value of a record made by :func:`encode_data`: the same types, and arrays and tensors with the same
    dtype, shape and bytes (fresh, writable copies).

    Raises:
        RecordFormatError: ``payload`` does not start with :data:`RECORD_MAGIC` (e.g. a pickle), or its header or
            array table is malformed or does not match its length. Nothing in ``payload`` is executed.
    """
    if not is_data_record(payload):
        start = bytes(payload[:2])
        kind = " (a pickle stream)" if start[:1] == b"\x80" else ""
        raise RecordFormatError(f"it does not start with the data-record signature but with {start!r}{kind}")
    view = memoryview(payload)
    table, end = _section(view, len(RECORD_MAGIC), "array table")
    tree, end = _section(view, end, "value")
    try:
        arrays = _read_arrays(json.loads(table), view[end:])
        return json.loads(tree, object_hook=partial(_decode_tagged, arrays=arrays))
    except RecordFormatError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, RecursionError) as error:
        raise RecordFormatError(f"its header is malformed ({type(error).__name__}: {error})") from error


def _section(view: memoryview, start: int, name: str) -> tuple[bytes, int]:
    """The length-prefixed section of ``view`` at ``start``, and where the next one starts."""
    body = start + LENGTH_BYTES
    if len(view) < body:
        raise RecordFormatError(f"it ends inside the length of its {name} ({len(view)} bytes)")
    length = int.from_bytes(view[start:body], "little")
    if length > len(view) - body:
        raise RecordFormatError(f"its {name} length {length} exceeds its {len(view) - body} remaining bytes")
    return bytes(view[body : body + length]), body + length


def _encode_node(value: Any, arrays: list[np.ndarray], place: str) -> Any:
    if isinstance(value, enum.Enum):
        name = type(value).__name__
        if ENUM_TYPES.get(name) is not type(value):
            raise TypeError(f"{place}: enum {type(value).__qualname__} is not one of MONAI's ({sorted(ENUM_TYPES)}).")
        return {"enum": [name, _encode_node(value.value, arrays, place)]}
    if type(value) in PLAIN_TYPES:
        return value
    if type(value) is list:
        return [_encode_node(item, arrays, f"{place}[{index}]") for index, item in enumerate(value)]
    if type(value) is tuple:
        return {"tuple": [_encode_node(item, arrays, f"{place}[{index}]") for index, item in enumerate(value)]}
    if type(value) is dict:
        pairs = [
            [_encode_node(key, arrays, f"{place} key {key!r}"), _encode_node(item, arrays, f"{place}[{key!r}]")]
            for key, item in value.items()
        ]
        return {"dict": pairs}
    if type(value) is bytes:
        return {"bytes": _add_array(np.frombuffer(value, dtype=np.uint8), arrays, place)}
    if isinstance(value, np.ndarray):
        return {"ndarray": _add_array(value, arrays, place)}
    if isinstance(value, np.generic):
        return {"scalar": _add_array(np.asarray(value), arrays, place)}
    if isinstance(value, torch.Tensor):
        return {"tensor": _add_array(value.as_subclass(torch.Tensor).detach().cpu().numpy(), arrays, place)}
    raise TypeError(f"{place}: a data record cannot hold a {type(value).__qualname__}.")


def _add_array(array: np.ndarray, arrays: list[np.ndarray], place: str) -> int:
    if array.dtype.str not in ARRAY_DTYPES:
        raise TypeError(f"{place}: a data record cannot hold arrays of dtype {array.dtype}.")
    arrays.append(array)
    return len(arrays) - 1


def _read_arrays(table: Any, data: memoryview) -> list[np.ndarray]:
    """The arrays of the header's ``table`` read from ``data``, which they must fill exactly."""
    if not isinstance(table, list):
        raise RecordFormatError("its array table is not a list")
    arrays, offset = [], 0
    for number, entry in enumerate(table):
        if not (type(entry) is list and len(entry) == 2 and type(entry[0]) is str and type(entry[1]) is list):
            raise RecordFormatError(f"array {number} is not described as [dtype, shape]")
        dtype, shape = ARRAY_DTYPES.get(entry[0]), entry[1]
        if dtype is None:
            raise RecordFormatError(f"array {number} has the unsupported dtype {entry[0]!r}")
        if not all(type(size) is int and size >= 0 for size in shape):
            raise RecordFormatError(f"array {number} has an invalid shape {shape!r}")
        size = math.prod(shape) * dtype.itemsize
        if offset + size > len(data):
            raise RecordFormatError(f"array {number} ({size} bytes) runs past the record's end")
        arrays.append(np.frombuffer(data, dtype, math.prod(shape), offset).reshape(shape).copy())
        offset += size
    if offset != len(data):
        raise RecordFormatError(f"{len(data) - offset} bytes follow its last array")
    return arrays


def _decode_tagged(node: dict, arrays: list[np.ndarray]) -> Any:
    """The value of one JSON object of the value section (``json`` calls this innermost first, so its content is
    already decoded). The most frequent tags are tested first."""
    if len(node) != 1:
        raise RecordFormatError(f"an object is not a one-key tagged node: {str(node)[:80]}")
    [(tag, content)] = node.items()
    if tag == "enum":
        member = ENUM_MEMBERS.get(tuple(content)) if type(content) is list else None
        if member is None:
            raise RecordFormatError(f"an 'enum' node names no member of a MONAI enum: {str(content)[:80]}")
        return member
    if tag == "dict" and type(content) is list:
        return dict(content)  # raises for anything but [key, value] pairs
    if tag == "tuple" and type(content) is list:
        return tuple(content)
    if tag not in ARRAY_TAGS:
        raise RecordFormatError(f"unknown node tag {tag!r}")
    if type(content) is not int or not 0 <= content < len(arrays):
        raise RecordFormatError(f"a {tag!r} node names array {content!r} of {len(arrays)}")
    array = arrays[content]
    if tag == "ndarray":
        return array
    if tag == "scalar":
        return array[()]
    if tag == "tensor":
        return torch.from_numpy(array)
    return array.tobytes()
