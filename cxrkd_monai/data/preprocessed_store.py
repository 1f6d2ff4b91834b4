"""An on-disk store of preprocessed items: append-only shards, one checksum per record, content-derived keys.

Layout under ``root`` (one ``root`` may serve any number of preprocessing settings, bundles and processes)::

    root/sources/fp-<stamp>.npy                 source fingerprint memo: (path, size, mtime_ns) -> content digest
    root/<settings>/shard-<stamp>.bin           records, concatenated
    root/<settings>/shard-<stamp>.idx.npy       the shard's index: key, offset, length, CRC-32 per record

``<settings>`` is ``v<FORMAT_VERSION>-`` and the first 16 hex digits of the settings digest, so that entries
made under other settings are never looked at. ``<stamp>`` is ``<time_ns>-<host>-<pid>-<n>``: unique per writer,
and increasing with time, so that when a key has records in several shards the newest one wins.

Atomicity: a shard is written as ``.<name>.bin.tmp``, flushed and fsynced, renamed to ``<name>.bin``; then its
index is written the same way and renamed to ``<name>.idx.npy``. The index rename is the commit point: a shard
without an index (a writer killed mid-way) is never read, and its files are removed by the next
:meth:`PreprocessedStore.remove_orphans` once the process that wrote them is gone. A record whose bytes do not
match its index (a truncated or corrupted shard) fails the length or CRC-32 check in :meth:`read` and is
reported missing, so that the caller rebuilds it; it is never decoded. A record that passes these checks but that
the caller cannot decode (not in its record format) is reported the same way through :meth:`PreprocessedStore.reject`.

Several processes may write at once (DataLoader workers, DDP ranks, both bundles): each writes shards of its
own and no file is ever modified in place, so there is no lock to take. Two writers that build the same key
write two identical records; either may be read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["DIGEST_SIZE", "FORMAT_VERSION", "PreprocessedStore", "digest"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
"""Bumped whenever the record encoding changes; it is part of every settings digest and folder name. 1: pickles;
2: data records (:mod:`cxrkd_monai.data.data_record`)."""

DIGEST_SIZE = 16
"""Bytes of every key and digest (BLAKE2b-128): collisions are negligible at any archive size."""

HASH_CHUNK = 1 << 20
MEMO_FILES_BEFORE_MERGE = 32

INDEX_DTYPE = np.dtype([("key", f"V{DIGEST_SIZE}"), ("offset", "<u8"), ("length", "<u8"), ("crc32", "<u4")])
MEMO_DTYPE = np.dtype([("fingerprint", f"V{DIGEST_SIZE}"), ("content", f"V{DIGEST_SIZE}")])


def digest(*parts: bytes) -> bytes:
    """BLAKE2b-128 of the length-prefixed ``parts`` (length prefixes keep ``("ab", "c")`` and ``("a", "bc")`` apart)."""
    hasher = hashlib.blake2b(digest_size=DIGEST_SIZE)
    for part in parts:
        hasher.update(len(part).to_bytes(8, "little"))
        hasher.update(part)
    return hasher.digest()


def file_fingerprint(path: str | os.PathLike) -> bytes:
    """Digest of ``(absolute path, size, mtime_ns)`` of a file: cheap (one ``stat``), changes when the file is
    rewritten. Raises ``OSError`` when the file cannot be stat'ed."""
    absolute = os.path.abspath(os.fspath(path))
    stat = os.stat(absolute)
    return digest(
        absolute.encode("utf-8", "surrogateescape"), str(stat.st_size).encode(), str(stat.st_mtime_ns).encode()
    )


def file_content_digest(path: str | os.PathLike) -> bytes:
    """BLAKE2b-128 of the file's bytes."""
    hasher = hashlib.blake2b(digest_size=DIGEST_SIZE)
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            hasher.update(chunk)
    return hasher.digest()


class PreprocessedStore:
    """Append-only, sharded, checksummed key -> bytes store for one preprocessing setting.

    Args:
        root: the cache folder, shared by every setting (created on first write).
        settings_digest: digest of everything besides the source file that determines a record (see
            :class:`cxrkd_monai.data.cached_preprocessing.CachedPreprocessingd`); records live in a sub-folder of
            ``root`` named after it.

    The index of every committed shard is held in memory as sorted numpy arrays (40 bytes a record; 15 MB for
    377k records), so that forked DataLoader workers share it without copying. :meth:`refresh` re-reads it;
    a process sees records committed by others after its next refresh.

    Example::

        store = PreprocessedStore("cache", digest(b"settings"))
        store.write_shard([(digest(b"item"), b"payload")])
        store.read(digest(b"item"))   # b"payload"
    """

    def __init__(self, root: str | os.PathLike, settings_digest: bytes) -> None:
        self.root = Path(root)
        self.settings_digest = settings_digest
        self.entries_dir = self.root / f"v{FORMAT_VERSION}-{settings_digest.hex()[:16]}"
        self.sources_dir = self.root / "sources"
        self.corrupt_count = 0
        self._keys = np.zeros(0, dtype=f"V{DIGEST_SIZE}")
        self._records = np.zeros(0, dtype=[("shard", "<u4"), ("offset", "<u8"), ("length", "<u8"), ("crc32", "<u4")])
        self._shard_names: list[str] = []
        self._memo_fingerprints = np.zeros(0, dtype=f"V{DIGEST_SIZE}")
        self._memo_contents = np.zeros(0, dtype=f"V{DIGEST_SIZE}")
        self._loaded = False

    def __getstate__(self) -> dict:
        # Workers started with spawn reload the index themselves instead of receiving a pickled copy.
        state = dict(self.__dict__)
        state.update(
            _keys=self._keys[:0], _records=self._records[:0], _shard_names=[], _loaded=False,
            _memo_fingerprints=self._memo_fingerprints[:0], _memo_contents=self._memo_contents[:0],
        )  # fmt: skip
        return state

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._keys)

    # ----------------------------------------------------------------------------------------------- index
    def refresh(self) -> None:
        """Re-read every committed shard index and the source fingerprint memo."""
        names, key_parts, record_parts = [], [], []
        for index_path in sorted(self.entries_dir.glob("shard-*.idx.npy")):
            try:
                index = np.load(index_path, allow_pickle=False)
            except (OSError, ValueError) as error:  # a damaged index: its shard is rebuilt, never read
                logger.warning("Preprocessed cache: unreadable shard index %s is ignored (%s).", index_path, error)
                continue
            if index.dtype != INDEX_DTYPE:
                logger.warning("Preprocessed cache: shard index %s has an unknown layout and is ignored.", index_path)
                continue
            records = np.zeros(len(index), dtype=self._records.dtype)
            records["shard"] = len(names)
            for field in ("offset", "length", "crc32"):
                records[field] = index[field]
            names.append(index_path.name[: -len(".idx.npy")])
            key_parts.append(index["key"])
            record_parts.append(records)
        keys = np.concatenate(key_parts) if key_parts else self._keys[:0]
        records = np.concatenate(record_parts) if record_parts else self._records[:0]
        # Newest shard wins: reverse, keep the first occurrence of each key, then sort by key for searchsorted.
        keys, first = np.unique(keys[::-1], return_index=True)
        self._keys, self._records, self._shard_names = keys, records[::-1][first], names
        self._load_memo()
        self._loaded = True

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.refresh()

    def _locate(self, key: bytes) -> int | None:
        self._ensure_loaded()
        probe = np.array(key, dtype=self._keys.dtype)
        position = int(np.searchsorted(self._keys, probe))
        if position < len(self._keys) and self._keys[position] == probe:
            return position
        return None

    def __contains__(self, key: bytes) -> bool:
        return self._locate(key) is not None

    def missing(self, keys: Sequence[bytes]) -> np.ndarray:
        """Boolean mask ``(len(keys),)``: True where ``keys[i]`` has no committed record."""
        self._ensure_loaded()
        if not len(keys):
            return np.zeros(0, dtype=bool)
        probes = np.array(list(keys), dtype=self._keys.dtype)
        positions = np.minimum(np.searchsorted(self._keys, probes), max(len(self._keys) - 1, 0))
        return ~(self._keys[positions] == probes) if len(self._keys) else np.ones(len(keys), dtype=bool)

    # ----------------------------------------------------------------------------------------------- records
    def read(self, key: bytes) -> bytes | None:
        """The record stored under ``key``, or None when there is none or it fails its length or CRC-32 check
        (then the corruption is logged and counted in :attr:`corrupt_count`, and the caller rebuilds it)."""
        position = self._locate(key)
        if position is None:
            return None
        record = self._records[position]
        shard, offset, length, crc = (int(record[name]) for name in ("shard", "offset", "length", "crc32"))
        path = self.entries_dir / f"{self._shard_names[shard]}.bin"
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                payload = handle.read(length)
        except OSError as error:
            return self._corrupt(key, path, f"cannot be read ({error})")
        if len(payload) != length:
            return self._corrupt(key, path, f"is truncated ({len(payload)} of {length} bytes)")
        if zlib.crc32(payload) != crc:
            return self._corrupt(key, path, "fails its CRC-32 check")
        return payload

    def reject(self, key: bytes, reason: str) -> None:
        """Log and count the record under ``key`` as corrupt for ``reason`` (e.g. its payload passed the CRC-32
        check but is not in the caller's record format), naming its shard file; returns None, like :meth:`read`
        for a corrupt record, so that the caller rebuilds it."""
        position = self._locate(key)
        shard = self._shard_names[int(self._records[position]["shard"])] if position is not None else "(no shard)"
        return self._corrupt(key, self.entries_dir / f"{shard}.bin", reason)

    def _corrupt(self, key: bytes, path: Path, reason: str) -> None:
        self.corrupt_count += 1
        logger.warning(
            "Preprocessed cache: record %s in %s %s; it is rebuilt, not read (%d corrupt record(s) in this process).",
            key.hex(), path, reason, self.corrupt_count,
        )  # fmt: skip
        return None

    def write_shard(self, records: Iterable[tuple[bytes, bytes]]) -> int:
        """Write ``(key, payload)`` records as one new shard, atomically; returns the number written.

        Readers see the records after their next :meth:`refresh`; this process's own index is updated now.
        """
        self.entries_dir.mkdir(parents=True, exist_ok=True)
        name = f"shard-{_stamp()}"
        bin_path, index_path = self.entries_dir / f"{name}.bin", self.entries_dir / f"{name}.idx.npy"
        bin_tmp, index_tmp = self.entries_dir / f".{name}.bin.tmp", self.entries_dir / f".{name}.idx.npy.tmp"
        rows = []
        with open(bin_tmp, "wb") as handle:
            offset = 0
            for key, payload in records:
                handle.write(payload)
                rows.append((key, offset, len(payload), zlib.crc32(payload)))
                offset += len(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if not rows:
            bin_tmp.unlink()
            return 0
        os.replace(bin_tmp, bin_path)
        index = np.array(rows, dtype=INDEX_DTYPE)
        with open(index_tmp, "wb") as handle:
            np.save(handle, index, allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(index_tmp, index_path)
        _fsync_folder(self.entries_dir)
        if self._loaded:
            self._add_to_index(name, index)
        return len(rows)

    def _add_to_index(self, name: str, index: np.ndarray) -> None:
        records = np.zeros(len(index), dtype=self._records.dtype)
        records["shard"] = len(self._shard_names)
        for field in ("offset", "length", "crc32"):
            records[field] = index[field]
        self._shard_names.append(name)
        keys = np.concatenate([index["key"][::-1], self._keys])
        merged = np.concatenate([records[::-1], self._records])
        self._keys, first = np.unique(keys, return_index=True)
        self._records = merged[first]

    def other_format_folders(self) -> list[Path]:
        """The folders of ``root`` written under another :data:`FORMAT_VERSION` (``v<n>-<settings>``); they are
        never read."""
        if not self.root.is_dir():
            return []
        return sorted(
            path for path in self.root.glob("v*-*")
            if path.is_dir() and path.name.split("-", 1)[0][1:].isdigit()
            and path.name.split("-", 1)[0] != f"v{FORMAT_VERSION}"
        )  # fmt: skip

    def remove_orphans(self) -> int:
        """Delete the temporary and uncommitted shard files of writers on this host that no longer run; returns
        how many files were removed. Files of live writers, or of other hosts, are left alone."""
        if not self.entries_dir.is_dir():
            return 0
        removed = 0
        committed = {path.name[: -len(".idx.npy")] for path in self.entries_dir.glob("shard-*.idx.npy")}
        for path in self.entries_dir.iterdir():
            name = path.name.lstrip(".")
            stem = name.split(".", 1)[0]
            uncommitted = path.name.endswith(".tmp") or (path.name.endswith(".bin") and stem not in committed)
            if uncommitted and _writer_is_gone(stem):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    # ----------------------------------------------------------------------------------------------- sources
    def content_digest(self, path: str | os.PathLike) -> bytes:
        """Digest of the file's content, from the fingerprint memo when ``(path, size, mtime_ns)`` is known,
        else by reading the file. Raises ``OSError`` when the file cannot be read."""
        known = self.memo_lookup(file_fingerprint(path))
        return known if known is not None else file_content_digest(path)

    def memo_lookup(self, fingerprint: bytes) -> bytes | None:
        """The content digest memoised for ``fingerprint``, or None."""
        self._ensure_loaded()
        probe = np.array(fingerprint, dtype=self._memo_fingerprints.dtype)
        position = int(np.searchsorted(self._memo_fingerprints, probe))
        if position < len(self._memo_fingerprints) and self._memo_fingerprints[position] == probe:
            return bytes(self._memo_contents[position])
        return None

    def remember(self, pairs: Sequence[tuple[bytes, bytes]]) -> None:
        """Add ``(fingerprint, content digest)`` pairs to the memo (a new memo file, written atomically)."""
        if not pairs:
            return
        self.sources_dir.mkdir(parents=True, exist_ok=True)
        _save_atomically(self.sources_dir / f"fp-{_stamp()}.npy", np.array(list(pairs), dtype=MEMO_DTYPE))
        self._load_memo()
        memo_files = sorted(self.sources_dir.glob("fp-*.npy"))
        if len(memo_files) > MEMO_FILES_BEFORE_MERGE:
            merged = np.zeros(len(self._memo_fingerprints), dtype=MEMO_DTYPE)
            merged["fingerprint"], merged["content"] = self._memo_fingerprints, self._memo_contents
            _save_atomically(self.sources_dir / f"fp-{_stamp()}.npy", merged)
            for path in memo_files:  # a concurrent reader that misses one only re-hashes those files
                path.unlink(missing_ok=True)

    def _load_memo(self) -> None:
        parts = []
        for path in sorted(self.sources_dir.glob("fp-*.npy")):
            try:
                memo = np.load(path, allow_pickle=False)
            except (OSError, ValueError):  # merged away by another process, or damaged: those files are re-hashed
                continue
            if memo.dtype == MEMO_DTYPE:
                parts.append(memo)
        memo = np.concatenate(parts) if parts else np.zeros(0, dtype=MEMO_DTYPE)
        fingerprints, first = np.unique(memo["fingerprint"], return_index=True)
        self._memo_fingerprints, self._memo_contents = fingerprints, memo["content"][first]


_counter = 0
_counter_lock = threading.Lock()


def _stamp() -> str:
    """``<time_ns>-<host>-<pid>-<n>``: unique per writer, ordered by time."""
    global _counter
    with _counter_lock:
        _counter += 1
        count = _counter
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:32] or "host"
    return f"{time.time_ns():020d}-{host}-{os.getpid()}-{count}"


def _writer_is_gone(stem: str) -> bool:
    """Whether the process that wrote ``shard-<time>-<host>-<pid>-<n>`` is known to have ended (this host only)."""
    parts = stem.split("-")
    if len(parts) < 5:
        return False
    host, pid = parts[-3], parts[-2]
    if host != "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:32] or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _save_atomically(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
