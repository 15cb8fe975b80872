"""The state lock: one node per state file, enforced with ``flock`` on ``<state>.lock``.

Why a separate lock file rather than SQLite's own locking: SQLite locks are per transaction and
are meant to be shared (backups, the ``sqlite3`` CLI and our reader connections must all get
in), whereas "a node is running on this file" is a whole-process fact. ``flock`` on a side file
gives exactly that: it is held as long as the file descriptor is open, the kernel drops it when
the process dies (even by SIGKILL), and it conflicts between two opens in the same process too.
The file holds the owner's pid so the error can say who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from caxton.errors import StateLockedError, StorageError

__all__ = ["StateLock", "is_locked", "lock_path"]


def lock_path(state_path: Path) -> Path:
    """The lock file that guards ``state_path``: ``<state_path>.lock``."""
    return state_path.with_name(state_path.name + ".lock")


class StateLock:
    """An exclusive, non-blocking lock on a state file, released by `release` or process exit."""

    def __init__(self, state_path: Path, fd: int) -> None:
        self.state_path = state_path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, state_path: Path, *, purpose: str = "") -> StateLock:
        """Take the lock or raise `StateLockedError` naming the path and the holder's pid.

        ``purpose`` is appended to the error message (for example "stop the node first").
        """
        path = lock_path(state_path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot create the lock file {path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise _locked_error(state_path, pid, purpose) from None
        except OSError as exc:
            os.close(fd)
            raise StorageError(f"cannot lock {path}: {exc}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(state_path, fd)

    @property
    def held(self) -> bool:
        """True until `release` is called."""
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (idempotent). The lock file stays; its content no longer matters."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor releases the flock


def is_locked(state_path: Path) -> int | None:
    """The pid of the process holding ``state_path``'s lock, or None if nobody holds it.

    The pid is 0 when the holder has not written it yet (it is between locking and writing).
    """
    path = lock_path(state_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int:
    # The holder writes its pid right after locking; give it a moment if we raced it.
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        time.sleep(0.005)
    return 0


def _locked_error(state_path: Path, pid: int, purpose: str) -> StateLockedError:
    who = f"a Caxton node (pid {pid})" if pid else "a Caxton node"
    message = f"{who} is using {state_path}"
    if purpose:
        message += f"; {purpose}"
    return StateLockedError(message, details={"path": str(state_path), "pid": pid})
