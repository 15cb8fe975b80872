"""`Health`: whether the state store can write right now, and if not, why (what /ready shows).

Two kinds of problem, each logged once when it starts and once when it ends (an *episode*),
never once per write:

* **Writes fail** (`write_failed`): a transaction failed with a storage-level SQLite error,
  that is a full disk, an I/O error, a corrupt or read-only file. A write error with no room
  left (no free space on the filesystem, or the process's file size limit reached: SQLite calls
  both an I/O error) is reported as a full disk. The writer reports every failed batch and every
  committed one; a commit ends the episode once no write has failed for `SETTLE` seconds (on a
  nearly full disk small writes fit where large ones do not: readiness must not flap). While
  the problem lasts and nothing else writes, the writer commits a tiny probe transaction every
  `CHECK_INTERVAL`, so the store is healthy again soon after space is freed.
* **The file is gone or broken** (`check_file`, every `CHECK_INTERVAL` on the writer thread):
  the database file was deleted or replaced under the running node (its name no longer leads
  to the file the node opened: every later write is lost when the node stops), or its header is
  no longer SQLite's (it was overwritten). Only a restart (after restoring the file) ends that.

An error that concerns one write only (a constraint, an unknown agent) is not a storage problem.

Each problem has two wordings: `Health.problem` names the file (the log, the admin listener's
``/status``), `Health.summary` says only what kind of problem it is (``/ready``, which answers
without a token: filesystem paths are not for anyone who can reach the API).
"""

from __future__ import annotations

import logging
import os
import resource
import sqlite3
import threading
import time
from pathlib import Path
from typing import NamedTuple

__all__ = ["CHECK_INTERVAL", "Health", "Problem", "is_storage_failure", "storage_failure"]

log = logging.getLogger("caxton.storage")

#: Seconds between checks of the database file (and probe writes while writes fail).
CHECK_INTERVAL = 1.0
#: Seconds without a failed write before a commit ends an episode of failing writes.
SETTLE = 3.0
#: Less room than this (free space, or below the file size limit) counts as a full disk.
_NO_ROOM = 1 << 20

#: Primary SQLite result codes that mean the store cannot write, whatever is written.
_FATAL = {
    13: "disk full",  # SQLITE_FULL
    10: "I/O error",  # SQLITE_IOERR
    11: "database file corrupt",  # SQLITE_CORRUPT
    26: "not a database",  # SQLITE_NOTADB
    8: "read-only",  # SQLITE_READONLY
    14: "cannot open",  # SQLITE_CANTOPEN
}

_HEADER = b"SQLite format 3\x00"


class Problem(NamedTuple):
    """One storage problem, worded for anyone (`summary`) and for the operator (`detail`)."""

    #: What kind of problem, without paths: "cannot write (disk full)".
    summary: str
    #: The same with the file's path and what to do, for the log and the admin listener.
    detail: str


def storage_failure(exc: BaseException) -> sqlite3.Error | None:
    """The SQLite error behind ``exc`` if it means the store cannot write, else None."""
    seen: BaseException | None = exc
    for _ in range(8):  # the cause chain is short: StorageError <- sqlite3.Error
        if seen is None:
            return None
        if isinstance(seen, sqlite3.Error):
            code = getattr(seen, "sqlite_errorcode", None)
            return seen if isinstance(code, int) and code & 0xFF in _FATAL else None
        seen = seen.__cause__ or seen.__context__
    return None


def is_storage_failure(exc: BaseException) -> bool:
    """True when ``exc`` says the store cannot write at all (it logs that once per episode)."""
    return storage_failure(exc) is not None


def _kind(error: sqlite3.Error, path: Path) -> str:
    primary = getattr(error, "sqlite_errorcode", 0) & 0xFF
    if primary == 10:  # SQLITE_IOERR: ENOSPC mid-write and EFBIG come out as I/O errors
        room = _no_room(path)
        if room is not None:
            return room
    return _FATAL.get(primary, "storage error")


def _no_room(path: Path) -> str | None:
    """ "disk full" (and why) when there is no room left to write ``path``, else None."""
    try:
        fs = os.statvfs(path.parent)
        if fs.f_bavail * fs.f_frsize < _NO_ROOM:
            return "disk full"
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY:
            names = (path, path.with_name(path.name + "-wal"))
            largest = max((p.stat().st_size for p in names if p.exists()), default=0)
            if largest + _NO_ROOM >= soft:
                return f"disk full (the file size limit, {soft} bytes, is reached)"
    except OSError:
        pass
    return None


class Health:
    """The store's write health (module docstring); read from any thread, set by the writer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._identity: tuple[int, int] | None = None
        self._fd: int | None = None
        self._write_problem: Problem | None = None
        self._file_problem: Problem | None = None
        self._failed_writes = 0
        self._last_failure = 0.0

    @property
    def problem(self) -> str | None:
        """Why the store cannot be relied on to write now, or None when it can (with the path)."""
        current = self._file_problem or self._write_problem
        return None if current is None else current.detail

    @property
    def summary(self) -> str | None:
        """`problem` without the file's path (what ``/ready`` shows), or None."""
        current = self._file_problem or self._write_problem
        return None if current is None else current.summary

    @property
    def writes_failing(self) -> bool:
        """True while the last transaction failed with a storage-level error."""
        return self._write_problem is not None

    def opened(self) -> None:
        """Remember which file the node opened (called once the database is open).

        The header is read through a descriptor kept open until `close`: closing any
        descriptor of the database file would drop the POSIX locks SQLite holds on it in this
        process (SQLite's "how to corrupt" list), so the file is never opened and closed again.
        """
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        st = os.fstat(self._fd)
        self._identity = (st.st_dev, st.st_ino)

    def close(self) -> None:
        """Close the descriptor `opened` took (after SQLite's connections are closed)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def write_failed(self, error: sqlite3.Error, ops: int) -> None:
        """A transaction of ``ops`` writes failed with ``error`` (`storage_failure`)."""
        kind = _kind(error, self.path)
        with self._lock:
            self._failed_writes += ops
            self._last_failure = time.monotonic()
            if self._write_problem is not None:
                return
            self._write_problem = Problem(
                f"cannot write ({kind})",
                f"{kind}: the state database {self.path} cannot be written",
            )
        log.error(
            "%s: cannot write to the state database %s (%s); writes fail, agents get an error "
            "from kv_set, and /ready answers 503 until it can be written again",
            kind,
            self.path,
            error,
            extra={"state_path": str(self.path), "problem": kind},
        )

    def write_succeeded(self) -> None:
        """A transaction committed: an episode of failing writes is over once it has settled."""
        if self._write_problem is None or time.monotonic() - self._last_failure < SETTLE:
            return
        with self._lock:
            failed, self._failed_writes = self._failed_writes, 0
            self._write_problem = None
        log.warning(
            "the state database %s can be written again (%d writes failed meanwhile)",
            self.path,
            failed,
            extra={"state_path": str(self.path), "failed_writes": failed},
        )

    def check_file(self) -> None:
        """Look at the file under the database's name: still the one opened, still SQLite."""
        problem = self._file_check()
        if problem == self._file_problem:
            return
        self._file_problem = problem
        if problem is not None:
            log.error("%s", problem.detail, extra={"state_path": str(self.path)})
        else:
            log.warning("the state database %s looks sound again", self.path)

    def _file_check(self) -> Problem | None:
        if self._identity is None or self._fd is None:
            return None
        restart = "restore it from a backup and restart the node"
        try:
            st = os.stat(self.path)
            header = os.pread(self._fd, len(_HEADER), 0)
        except FileNotFoundError:
            return Problem(
                f"the state database was deleted while the node runs; {restart}",
                f"the state database {self.path} was deleted while the node runs: what it "
                f"writes now is lost when it stops; {restart}",
            )
        except OSError as exc:
            return Problem(
                "the state database cannot be read",
                f"the state database {self.path} cannot be read: {exc.strerror or exc}",
            )
        if (st.st_dev, st.st_ino) != self._identity:
            return Problem(
                "the state database was replaced by another file while the node runs; restart "
                "the node",
                f"the state database {self.path} was replaced by another file while the node "
                f"runs: what it writes now goes to the old file; restart the node",
            )
        if header != _HEADER:
            return Problem(
                f"the state database is corrupted; {restart}",
                f"the state database {self.path} is corrupted (its header is not SQLite's); "
                f"{restart}",
            )
        return None
