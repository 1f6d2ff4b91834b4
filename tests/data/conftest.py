"""Helpers shared by the data tests, imported as ``from tests.data.conftest import assert_identical``."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import torch


def assert_identical(value: Any, expected: Any, place: str = "value") -> None:
    """Same types all the way down; arrays and tensors with the same dtype, shape and bytes; floats bit for bit."""
    assert type(value) is type(expected), place
    if isinstance(expected, torch.Tensor):
        assert value.dtype == expected.dtype and value.shape == expected.shape, place
        assert value.numpy().tobytes() == expected.numpy().tobytes(), place
    elif isinstance(expected, (np.ndarray, np.generic)):
        assert value.dtype == expected.dtype and value.shape == expected.shape, place
        assert value.tobytes() == expected.tobytes(), place
    elif isinstance(expected, float):
        assert struct.pack("<d", value) == struct.pack("<d", expected), place
    elif isinstance(expected, dict):
        assert list(value) == list(expected), place  # keys, their types (checked below) and their order
        for (key, item), (expected_key, expected_item) in zip(value.items(), expected.items()):
            assert_identical(key, expected_key, f"{place} key {expected_key!r}")
            assert_identical(item, expected_item, f"{place}[{expected_key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(value) == len(expected), place
        for index, (item, expected_item) in enumerate(zip(value, expected)):
            assert_identical(item, expected_item, f"{place}[{index}]")
    else:
        assert value == expected, place
