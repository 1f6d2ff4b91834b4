import hashlib
import logging
import multiprocessing

import numpy as np
import pytest

from cxrkd_monai.data.embedding_store import HEADER_DTYPE, EmbeddingStore, record_dtype

DIM = 6
LOGGER = "cxrkd_monai.data.embedding_store"


def digest(index: int) -> bytes:
    return hashlib.sha256(f"report {index}".encode()).digest()


def embeddings(indices) -> np.ndarray:
    """Distinct values per index, including ones that do not round-trip through decimal text."""
    return np.stack([np.arange(DIM, dtype=np.float32) / 3 + np.float32(index) * np.float32(0.1) for index in indices])


def test_appended_embeddings_read_back_bit_identical_after_reopening(tmp_path):
    path = tmp_path / "store.bin"
    store = EmbeddingStore(path, DIM)
    store.append([digest(i) for i in range(3)], embeddings(range(3)))
    store.append([digest(i) for i in range(2, 5)], embeddings(range(2, 5)))
    assert len(store) == 5
    assert path.stat().st_size == HEADER_DTYPE.itemsize + 5 * record_dtype(DIM).itemsize

    reopened = EmbeddingStore(path, DIM)
    rows = reopened.rows([digest(4), digest(0), digest(9)])
    np.testing.assert_array_equal(rows, [4, 0, -1])
    read = reopened.read(rows[:2])
    assert read.dtype == np.float32
    assert read.tobytes() == embeddings([4, 0]).tobytes()


def test_a_reader_sees_rows_another_store_object_appended(tmp_path):
    reader = EmbeddingStore(tmp_path / "store.bin", DIM)
    assert reader.rows([digest(0)]).tolist() == [-1]
    EmbeddingStore(tmp_path / "store.bin", DIM).append([digest(0)], embeddings([0]))
    assert reader.rows([digest(0)]).tolist() == [0]


def test_partial_last_record_is_never_read_and_is_cut_by_the_next_append(tmp_path, caplog):
    path = tmp_path / "store.bin"
    EmbeddingStore(path, DIM).append([digest(i) for i in range(3)], embeddings(range(3)))
    full = path.read_bytes()
    path.write_bytes(full[:-5])  # an append of the third record cut short

    store = EmbeddingStore(path, DIM)
    assert store.rows([digest(0), digest(1), digest(2)]).tolist() == [0, 1, -1]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        store.append([digest(2)], embeddings([2]))
    assert "partial record" in caplog.text and str(path) in caplog.text
    assert path.read_bytes() == full


def test_record_failing_its_checksum_is_left_out_with_a_warning(tmp_path, caplog):
    path = tmp_path / "store.bin"
    EmbeddingStore(path, DIM).append([digest(i) for i in range(3)], embeddings(range(3)))
    corrupt = bytearray(path.read_bytes())
    corrupt[HEADER_DTYPE.itemsize + record_dtype(DIM).itemsize + 40] ^= 0xFF  # an embedding byte of row 1
    path.write_bytes(bytes(corrupt))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        store = EmbeddingStore(path, DIM)
        assert store.rows([digest(0), digest(1), digest(2)]).tolist() == [0, -1, 2]
    assert "record 1 fails its checksum" in caplog.text
    store.append([digest(1)], embeddings([1]))
    assert store.read(store.rows([digest(1)])).tobytes() == embeddings([1]).tobytes()


@pytest.mark.parametrize("header", [b"", b"CXRKD-EMB", b"x" * HEADER_DTYPE.itemsize], ids=["empty", "cut", "garbage"])
def test_store_without_a_valid_header_is_rebuilt_with_a_warning(tmp_path, caplog, header):
    path = tmp_path / "store.bin"
    path.write_bytes(header)
    store = EmbeddingStore(path, DIM)
    assert store.rows([digest(0)]).tolist() == [-1]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        store.append([digest(0)], embeddings([0]))
    assert "rebuilding it" in caplog.text and str(path) in caplog.text
    assert EmbeddingStore(path, DIM).read(np.array([0])).tobytes() == embeddings([0]).tobytes()


def test_store_of_another_width_is_rebuilt(tmp_path, caplog):
    path = tmp_path / "store.bin"
    EmbeddingStore(path, DIM + 1).append([digest(0)], np.zeros((1, DIM + 1), dtype=np.float32))
    store = EmbeddingStore(path, DIM)
    assert store.rows([digest(0)]).tolist() == [-1]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        store.append([digest(0)], embeddings([0]))
    assert "rebuilding it" in caplog.text
    assert len(EmbeddingStore(path, DIM + 1).rows([digest(0)])) == 1 and len(store) == 1


def _append_range(path, start: int, stop: int) -> None:
    store = EmbeddingStore(path, DIM)
    for index in range(start, stop):
        store.append([digest(index)], embeddings([index]))


def test_concurrent_appends_store_each_digest_once_and_intact(tmp_path):
    path = tmp_path / "store.bin"
    context = multiprocessing.get_context("fork")
    # Overlapping ranges, as ranks that meet the same reports in different orders.
    workers = [context.Process(target=_append_range, args=(path, start, start + 40)) for start in (0, 20, 30)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    store = EmbeddingStore(path, DIM)
    rows = store.rows([digest(i) for i in range(70)])
    assert sorted(rows.tolist()) == list(range(70))
    assert path.stat().st_size == HEADER_DTYPE.itemsize + 70 * record_dtype(DIM).itemsize
    assert store.read(rows).tobytes() == embeddings(range(70)).tobytes()


def test_invalid_arguments_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        EmbeddingStore(tmp_path / "store.bin", 0)
    store = EmbeddingStore(tmp_path / "store.bin", DIM)
    with pytest.raises(ValueError, match=r"expected embeddings of shape \(1, 6\)"):
        store.append([digest(0)], np.zeros((1, DIM + 1)))
    with pytest.raises(ValueError, match="digests must be 32 bytes"):
        store.append([b"short"], np.zeros((1, DIM)))
    with pytest.raises(KeyError, match="not all stored"):
        store.read(np.array([-1]))
