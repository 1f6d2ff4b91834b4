"""An exclusive lock on an output folder, so that two runs never write into the same one at once."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

__all__ = ["FolderInUseError", "FolderLock"]

logger = logging.getLogger(__name__)

UNREADABLE_LOCK_GRACE_S = 10.0


class FolderInUseError(RuntimeError):
    """The folder is locked by another process that is still running."""


class FolderLock:
    """Exclusive lock on ``folder``: a lock file created with ``O_CREAT | O_EXCL`` holding ``"<pid> <host>"``.

    :meth:`acquire` creates the file or fails; :meth:`release` removes it. A lock left by a process of this host
    that no longer exists (a run that was killed) is taken over with a warning. A lock from another host cannot be
    checked and is always respected; remove its file by hand once that run is known to be gone.

    Args:
        folder: the folder to lock (created).
        lock_name: name of the lock file inside ``folder``.

    Raises:
        FolderInUseError: from :meth:`acquire`, naming the folder, the lock file and the holder's pid.

    Example::

        with FolderLock("predictions"):
            ...  # write into predictions/
    """

    def __init__(self, folder: str | Path, lock_name: str = ".lock") -> None:
        self.folder = Path(folder)
        self.path = self.folder / lock_name
        self.held = False

    def acquire(self) -> None:
        """Takes the lock, or raises :class:`FolderInUseError` when a live process holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._create():
            return
        holder = self._holder()
        if (holder is None and self._just_created()) or (holder is not None and _is_alive(*holder)):
            who = "a process that is starting" if holder is None else f"pid {holder[0]} on {holder[1]}"
            raise FolderInUseError(
                f"Output folder {str(self.folder)!r} is in use by another run ({who}, lock file "
                f"{str(self.path)!r}). Wait for that run to finish or choose another output folder."
            )
        logger.warning(
            "Taking over the stale lock %s (%s no longer runs).",
            self.path,
            "an unreadable holder" if holder is None else f"pid {holder[0]}",
        )
        self.path.unlink(missing_ok=True)
        if not self._create():
            raise FolderInUseError(f"Output folder {str(self.folder)!r} was locked by another run just now.")

    def release(self) -> None:
        """Removes the lock file, if this object holds it."""
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def _create(self) -> bool:
        try:
            handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(handle, "w") as f:
            f.write(f"{os.getpid()} {socket.gethostname()}\n")
        self.held = True
        return True

    def _just_created(self) -> bool:
        """An unreadable lock younger than this is taken as one whose holder is still writing its pid."""
        try:
            return time.time() - self.path.stat().st_mtime < UNREADABLE_LOCK_GRACE_S
        except FileNotFoundError:
            return False

    def _holder(self) -> tuple[int, str] | None:
        try:
            pid, host = self.path.read_text().split()
            return int(pid), host
        except (OSError, ValueError):
            return None


def _is_alive(pid: int, host: str) -> bool:
    """Whether process ``pid`` of ``host`` may still run (always true for another host, which cannot be checked)."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
