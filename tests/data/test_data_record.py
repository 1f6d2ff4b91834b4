"""The data-only record format: bit-exact round trip of every supported value, and malformed bytes refused."""

import json
import math
import pickle
import pickletools

import numpy as np
import pytest
import torch
from monai.utils import MetaKeys, SpaceKeys, TraceKeys

from cxrkd_monai.data.data_record import RECORD_MAGIC, RecordFormatError, decode_data, encode_data
from tests.data.conftest import assert_identical


def every_kind_of_value():
    rng = np.random.default_rng(0)
    arrays = {
        dtype: (rng.random((3, 4)) * 200 - 100).astype(dtype)
        for dtype in ("<f2", "<f4", "<f8", ">f8", "<i1", "<i8", "<u1", ">u2", "<u8", "<c8", "<c16")
    }
    return {
        "none": None,
        "flags": [True, False],
        "ints": [0, -1, 2**70, -(2**63)],
        "floats": (0.1, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308, 1 / 3),
        "text": ["", "Fracture of the 5th rib ✓", "surrogate \udce9 kept"],
        "bytes": b"\x80\x05\x00 raw",
        "arrays": arrays,
        "bool array": rng.random(7) > 0.5,
        "zero-d": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 5), dtype=np.int64),
        "strided": np.arange(24, dtype=np.int16).reshape(4, 6)[:, ::2],
        "scalars": [np.float64(0.1), np.float32(-0.0), np.int64(-7), np.uint16(65535), np.bool_(True)],
        "tensors": [torch.arange(6, dtype=torch.int64).reshape(2, 3), torch.rand(2, 2, dtype=torch.float64),
                    torch.tensor([True, False]), torch.rand(3, 3)[:, 1]],  # fmt: skip
        (1, "tuple key"): {2: "int key", 3.5: "float key", None: "none key", TraceKeys.ID: TraceKeys.NONE},
        MetaKeys.SPACE: SpaceKeys.RAS,
        "nested": [[], (), {}, ((1,),), [{"a": [np.arange(3)]}]],
    }


def test_every_supported_value_round_trips_bit_for_bit():
    value = every_kind_of_value()
    decoded = decode_data(encode_data(value))
    assert_identical(decoded, value)
    assert decoded["arrays"]["<f4"].flags.writeable and decoded["tensors"][0].numpy().flags.writeable
    assert decode_data(encode_data(decoded)) is not decoded and encode_data(decoded) == encode_data(value)


def test_a_record_is_not_a_pickle_and_a_pickle_is_not_a_record():
    payload = encode_data(every_kind_of_value())
    assert payload.startswith(RECORD_MAGIC) and payload[:1] != b"\x80"  # no PROTO opcode at the start
    with pytest.raises(ValueError, match="at position 0"):  # its first byte is no pickle opcode at all
        list(pickletools.genops(payload))
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(payload)
    with pytest.raises(RecordFormatError, match="a pickle stream"):
        decode_data(pickle.dumps({"image": np.zeros(3)}, protocol=5))


def sections(payload):
    """The array table, the value and the array bytes of a record."""
    start, parts = len(RECORD_MAGIC), []
    for _ in range(2):
        length = int.from_bytes(payload[start : start + 8], "little")
        parts.append(json.loads(payload[start + 8 : start + 8 + length]))
        start += 8 + length
    return parts[0], parts[1], payload[start:]


def assemble(table, value, data):
    table, value = json.dumps(table).encode(), json.dumps(value).encode()
    return RECORD_MAGIC + len(table).to_bytes(8, "little") + table + len(value).to_bytes(8, "little") + value + data


def test_sections_and_assemble_read_and_write_the_documented_layout():
    payload = encode_data({"a": np.arange(4, dtype=np.float64)})
    table, value, data = sections(payload)
    assert (table, value, data) == ([["<f8", [4]]], {"dict": [["a", {"ndarray": 0}]]}, np.arange(4.0).tobytes())
    assert_identical(decode_data(assemble(table, value, data)), {"a": np.arange(4, dtype=np.float64)})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda table, value, data: (table, value, data[:-1]), "runs past the record's end"),
        (lambda table, value, data: (table, value, data + b"\x00"), "1 bytes follow its last array"),
        (lambda table, value, data: ([["|O", [4]]], value, data), "unsupported dtype '|O'"),
        (lambda table, value, data: ([["<f8", [-4]]], value, data), "invalid shape"),
        (lambda table, value, data: ({"0": "<f8"}, value, data), "array table is not a list"),
        (lambda table, value, data: (table, {"ndarray": 5}, data), "names array 5 of 1"),
        (lambda table, value, data: (table, {"global": "os.system"}, data), "unknown node tag 'global'"),
        (lambda table, value, data: (table, {"enum": ["Path", "/"]}, data), "names no member of a MONAI enum"),
        (lambda table, value, data: (table, {"tuple": [], "dict": []}, data), "not a one-key tagged node"),
        (lambda table, value, data: (table, {"dict": [[[1], 2]]}, data), "malformed"),  # an unhashable key
    ],
)
def test_malformed_records_are_refused_with_the_reason(edit, message):
    table, value, data = sections(encode_data(np.arange(4, dtype=np.float64)))
    with pytest.raises(RecordFormatError, match=message):
        decode_data(assemble(*edit(table, value, data)))


def test_a_record_cut_short_is_refused():
    payload = encode_data({"a": 1})
    with pytest.raises(RecordFormatError, match="its value length .* exceeds"):
        decode_data(payload[:-3])
    with pytest.raises(RecordFormatError, match="ends inside the length of its array table"):
        decode_data(RECORD_MAGIC + b"\x01")


@pytest.mark.parametrize(
    ("value", "place"),
    [
        ({"a": [1, object()]}, r"value\['a'\]\[1\]: a data record cannot hold a object"),
        ({"a": np.array(["text"])}, r"value\['a'\]: a data record cannot hold arrays of dtype <U4"),
        ({"a": {1, 2}}, "cannot hold a set"),
    ],
)
def test_unsupported_values_are_refused_when_written_naming_their_place(value, place):
    with pytest.raises(TypeError, match=place):
        encode_data(value)
