"""A single append-only, memory-mapped file of fixed-width embeddings keyed by a 32-byte digest.

Training on a MIMIC-CXR-sized datalist meets a few hundred thousand unique reports. One file per report
costs an inode, a directory entry and an ``open`` each; this store keeps them all in one file that the
operating system pages in on demand, so a process holds only the rows it reads.
"""

from __future__ import annotations

import fcntl
import logging
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["EmbeddingStore"]

logger = logging.getLogger(__name__)

MAGIC = b"CXRKD-EMBEDDINGS"
FORMAT_VERSION = 1
HEADER_DTYPE = np.dtype([("magic", "S16"), ("version", "<u4"), ("dim", "<u4"), ("record_bytes", "<u8")])
DIGEST_BYTES = 32


def record_dtype(dim: int) -> np.dtype:
    """One row: the key digest, the CRC-32 of digest and embedding bytes, and ``dim`` little-endian float32."""
    return np.dtype([("digest", "u1", (DIGEST_BYTES,)), ("crc", "<u4"), ("embedding", "<f4", (dim,))])


class EmbeddingStore:
    """Float32 embeddings ``(D,)`` in one file, appended under a lock and read through ``np.memmap``.

    File layout: a 32-byte header (magic, format version, ``D``, record size) followed by fixed-width
    records ``[digest (32 bytes) | crc32 (4 bytes) | embedding (4 D bytes)]``. The in-memory index maps each
    digest to its row.

    Safety:
        - Appends hold an exclusive ``flock`` on ``<path>.lock``, so concurrent DDP ranks or data-loader
          workers never interleave records. Under the lock the writer re-reads the file and skips digests
          another process appended in the meantime, so each digest is stored once.
        - Readers map only whole records; a tail shorter than one record (an append cut short by a crash)
          is never read, and the next writer truncates it with a warning.
        - Every record carries a CRC-32; a record that fails it is left out of the index with a warning, so
          its key reads as missing and is computed and appended again.
        - A file whose header is unreadable or written for another ``D`` is replaced (a new file renamed
          into place, so processes still mapping the old one are unaffected) with a warning naming it.

    Args:
        path: the store file (created with its folder on first append).
        dim: the embedding width ``D``.

    Example::

        store = EmbeddingStore("cache/embeddings.bin", dim=384)
        store.append([digest], np.ones((1, 384), dtype=np.float32))
        rows = store.rows([digest])  # array([0])
        store.read(rows)  # (1, 384) float32
    """

    def __init__(self, path: str | os.PathLike, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim}.")
        self.path = Path(path)
        self.dim = dim
        self.record = record_dtype(dim)
        self._index: dict[bytes, int] = {}
        self._map: np.memmap | None = None
        self._mapped_records = 0
        self._inode: int | None = None

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._index

    def rows(self, digests: Sequence[bytes]) -> np.ndarray:
        """Row of each digest, ``-1`` for those not stored; re-reads the file first if another process grew it."""
        if any(digest not in self._index for digest in digests):
            self.refresh()
        return np.fromiter((self._index.get(digest, -1) for digest in digests), dtype=np.int64, count=len(digests))

    def read(self, rows: np.ndarray) -> np.ndarray:
        """A copy of the embeddings at ``rows`` (from :meth:`rows`), as float32 ``(len(rows), D)``."""
        if len(rows) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if rows.max() >= self._mapped_records:
            self.refresh()
        if rows.min() < 0 or rows.max() >= self._mapped_records:
            raise KeyError(f"EmbeddingStore {str(self.path)!r}: rows {rows.tolist()} are not all stored.")
        return np.array(self._map["embedding"][rows], dtype=np.float32)

    def append(self, digests: Sequence[bytes], embeddings: np.ndarray) -> None:
        """Store ``embeddings`` ``(N, D)`` under ``digests``; digests already stored (by any process) are skipped."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.shape != (len(digests), self.dim):
            raise ValueError(
                f"EmbeddingStore {str(self.path)!r}: expected embeddings of shape ({len(digests)}, {self.dim}), "
                f"got {embeddings.shape}."
            )
        for digest in digests:
            if not isinstance(digest, bytes) or len(digest) != DIGEST_BYTES:
                raise ValueError(f"EmbeddingStore digests must be {DIGEST_BYTES} bytes, got {digest!r}.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._repair()
                self.refresh()
                new = {digest: row for row, digest in enumerate(digests) if digest not in self._index}
                if new:
                    records = np.zeros(len(new), dtype=self.record)
                    records["digest"] = np.frombuffer(b"".join(new), dtype=np.uint8).reshape(-1, DIGEST_BYTES)
                    records["embedding"] = embeddings[list(new.values())]
                    records["crc"] = [_crc(record) for record in records]
                    with open(self.path, "ab") as file:
                        file.write(records.tobytes())
                        file.flush()
                        os.fsync(file.fileno())
                    self.refresh()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def refresh(self) -> None:
        """Map the records appended since the last call (or the new file, if it was replaced) and index them."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._reset(None)
            return
        if stat.st_ino != self._inode:
            self._reset(stat.st_ino)
        header_ok = self._header_matches()
        complete = (stat.st_size - HEADER_DTYPE.itemsize) // self.record.itemsize if header_ok else 0
        if complete <= self._mapped_records:
            return
        self._map = np.memmap(self.path, dtype=self.record, mode="r", offset=HEADER_DTYPE.itemsize, shape=(complete,))
        new_records = self._map[self._mapped_records : complete]
        for row, record in enumerate(new_records, start=self._mapped_records):
            if _crc(record) != int(record["crc"]):
                logger.warning(
                    "Embedding store %s: record %d fails its checksum; its embedding will be computed again.",
                    self.path,
                    row,
                )
                continue
            self._index.setdefault(record["digest"].tobytes(), row)
        self._mapped_records = complete

    def _reset(self, inode: int | None) -> None:
        self._index.clear()
        self._map = None
        self._mapped_records = 0
        self._inode = inode

    def _header_matches(self) -> bool:
        try:
            header = np.fromfile(self.path, dtype=HEADER_DTYPE, count=1)
        except OSError:
            return False
        return (
            len(header) == 1
            and header["magic"][0] == MAGIC
            and int(header["version"][0]) == FORMAT_VERSION
            and int(header["dim"][0]) == self.dim
            and int(header["record_bytes"][0]) == self.record.itemsize
        )

    def _repair(self) -> None:
        """Under the write lock: start a file with a valid header and cut a partial last record."""
        if not self.path.exists() or not self._header_matches():
            if self.path.exists():
                logger.warning(
                    "Embedding store %s has no valid header for %d-wide float32 records (truncated, corrupt or "
                    "from another format); rebuilding it, its embeddings will be computed again.",
                    self.path,
                    self.dim,
                )
            header = np.zeros(1, dtype=HEADER_DTYPE)
            header["magic"], header["version"] = MAGIC, FORMAT_VERSION
            header["dim"], header["record_bytes"] = self.dim, self.record.itemsize
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            with open(temporary, "wb") as file:
                file.write(header.tobytes())
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
            return
        size = self.path.stat().st_size
        partial = (size - HEADER_DTYPE.itemsize) % self.record.itemsize
        if partial:
            logger.warning(
                "Embedding store %s ends in a partial record (%d of %d bytes, an interrupted append); cutting it, "
                "its embedding will be computed again.",
                self.path,
                partial,
                self.record.itemsize,
            )
            os.truncate(self.path, size - partial)


def _crc(record: np.void) -> int:
    return zlib.crc32(record["embedding"].tobytes(), zlib.crc32(record["digest"].tobytes()))
