"""The one place that opens SQLite connections and turns `sqlite3.Error` into `StorageError`.

Code outside ``caxton.storage`` never sees a ``sqlite3`` object: the write and read callables
that :class:`~caxton.storage.Storage` runs receive a :class:`Connection`, a small typed wrapper
whose methods raise :class:`~caxton.errors.StorageError` (with the SQLite message and the
statement) instead of ``sqlite3.Error``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from caxton.errors import StorageError

__all__ = ["Connection", "Params", "Row", "close", "connect", "sqlite_errors"]

#: One result row: the selected columns in order.
Row: TypeAlias = tuple[Any, ...]
#: Statement parameters: positional (``?``) or named (``:name``).
Params: TypeAlias = Sequence[object] | Mapping[str, object]

#: How long a connection waits for another one's lock before failing (milliseconds).
BUSY_TIMEOUT_MS = 5000


@contextlib.contextmanager
def sqlite_errors(what: str) -> Iterator[None]:
    """Re-raise any ``sqlite3.Error`` in the block as `StorageError` saying what was being done."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StorageError(f"{what}: {exc}", details={"sqlite_error": type(exc).__name__}) from exc


class Connection:
    """A typed view of one SQLite connection, handed to read and write callables.

    Every method raises `StorageError` when SQLite fails (a constraint, a full disk, a locked
    database). Inside `Storage.write` the callable runs in a transaction of its own (a
    savepoint): raising any exception undoes exactly what that callable did.
    Do not keep the object after the callable returns, and do not share it between threads.
    """

    __slots__ = ("_conn", "_read_only")

    def __init__(self, conn: sqlite3.Connection, *, read_only: bool = False) -> None:
        self._conn = conn
        self._read_only = read_only

    @property
    def read_only(self) -> bool:
        """True on reader connections, where every write statement fails."""
        return self._read_only

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        with sqlite_errors(_describe(sql)):
            return self._conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        """Run one statement once per parameter set; return the number of rows changed."""
        with sqlite_errors(_describe(sql)):
            return self._conn.executemany(sql, rows).rowcount

    def insert(self, sql: str, params: Params = ()) -> int:
        """Run one INSERT and return the rowid of the new row."""
        with sqlite_errors(_describe(sql)):
            rowid = self._conn.execute(sql, params).lastrowid
        if rowid is None:  # pragma: no cover - only for statements that insert nothing
            raise StorageError(f"{_describe(sql)}: no row was inserted")
        return rowid

    def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of a query, or None if it returns none."""
        with sqlite_errors(_describe(sql)):
            row: Row | None = self._conn.execute(sql, params).fetchone()
        return row

    def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of a query, in the order SQLite returns them."""
        with sqlite_errors(_describe(sql)):
            rows: list[Row] = self._conn.execute(sql, params).fetchall()
        return rows

    def fetch_value(self, sql: str, params: Params = (), default: Any = None) -> Any:
        """The first column of the first row, or ``default`` if there is no row."""
        row = self.fetch_one(sql, params)
        return default if row is None else row[0]

    def _raw_execute(self, sql: str) -> None:
        """Run transaction control (BEGIN, SAVEPOINT, COMMIT); for the storage internals only."""
        self._conn.execute(sql)


def private_file(path: Path) -> Path:
    """Create ``path`` empty and readable by its owner only (0600), unless it exists.

    The state database and its backups hold agents' key/value data and messages; SQLite gives
    its ``-wal`` and ``-shm`` files the database file's mode. An existing file keeps the mode
    an operator gave it.
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    return path


def connect(path: Path, *, journal_mode: str | None = None, read_only: bool = False) -> Connection:
    """Open ``path`` in autocommit mode with Caxton's PRAGMAs applied.

    ``journal_mode`` is set when given (the writer does it; readers inherit the file's mode).
    Under WAL ``synchronous=NORMAL`` keeps every committed transaction across a process crash
    (a power loss may drop the last few); other modes use ``FULL``. Raises `StorageError` if the
    file cannot be opened or is not a database, or the journal mode is refused.
    """
    with sqlite_errors(f"cannot open the state database {path}"):
        raw = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
    try:
        with sqlite_errors(f"cannot configure the state database {path}"):
            raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            raw.execute("PRAGMA foreign_keys = ON")
            # Statement journals and sorts in memory: a multi-row statement inside a
            # transaction would otherwise create (and unlink) a temporary file every time.
            raw.execute("PRAGMA temp_store = MEMORY")
            if journal_mode is not None:
                got = raw.execute(f"PRAGMA journal_mode = {_journal_mode(journal_mode)}")
                mode = str(got.fetchone()[0]).upper()
                if mode != journal_mode.upper():
                    raise StorageError(
                        f"{path}: SQLite refused journal_mode={journal_mode} (it is {mode})"
                    )
            mode = str(raw.execute("PRAGMA journal_mode").fetchone()[0]).upper()
            raw.execute(f"PRAGMA synchronous = {'NORMAL' if mode == 'WAL' else 'FULL'}")
            if read_only:
                raw.execute("PRAGMA query_only = ON")
    except BaseException:
        raw.close()
        raise
    return Connection(raw, read_only=read_only)


def close(conn: Connection) -> None:
    """Close the underlying connection, ignoring a connection that is already broken."""
    with contextlib.suppress(sqlite3.Error):
        conn._conn.close()


_JOURNAL_MODES = frozenset({"WAL", "DELETE", "TRUNCATE", "PERSIST", "MEMORY", "OFF"})


def _journal_mode(mode: str) -> str:
    if mode.upper() not in _JOURNAL_MODES:
        raise StorageError(f"unknown journal_mode {mode!r}; use one of {sorted(_JOURNAL_MODES)}")
    return mode.upper()


def _describe(sql: str) -> str:
    text = " ".join(sql.split())
    return f"SQL failed ({text[:80]}{'...' if len(text) > 80 else ''})"
