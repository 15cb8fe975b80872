"""Online backup and offline restore of the state database.

`backup_database` copies a live database through SQLite's backup API from a connection of its
own: it never takes the node's lock, and under WAL it reads one consistent snapshot (a prefix
of the node's commits) while the node keeps writing. This is what the seed's operator script
does with ``sqlite3 "$STATE_PATH" ".backup 'FILE'"``, and the two are interchangeable.

`restore_database` replaces a state file with a backup. It takes the node's lock for the whole
operation, so it refuses while a node runs on the file and no node can start half-way through.
The previous file is kept next to it as ``<dest>.before-restore``.
"""

from __future__ import annotations

import contextlib
import gzip as gzip_module
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from caxton.errors import StorageError
from caxton.storage._connection import BUSY_TIMEOUT_MS, private_file, sqlite_errors
from caxton.storage._lock import StateLock, is_locked
from caxton.storage.schema import SCHEMA_VERSION

__all__ = ["BackupResult", "RestoreResult", "backup_database", "is_locked", "restore_database"]

_SQLITE_MAGIC = b"SQLite format 3\x00"
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What `backup_database` wrote."""

    #: The backup file (ends in ``.gz`` when compressed).
    path: Path
    #: Its size on disk.
    bytes: int
    #: Database pages copied.
    pages: int
    #: Wall time of the whole backup, seconds.
    duration: float


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What `restore_database` did."""

    #: The state file that now holds the backup's content.
    path: Path
    #: The backup it came from.
    source: Path
    #: Where the state file that was replaced is kept, or None if there was none.
    previous: Path | None
    #: Schema version of the restored database (migrated up when the node next starts).
    schema_version: int
    #: Database pages restored.
    pages: int
    #: Wall time, seconds.
    duration: float

    @property
    def message(self) -> str:
        """One line for the operator."""
        kept = f"; the previous state is kept as {self.previous}" if self.previous else ""
        return f"restored {self.path} from {self.source} ({self.pages} pages){kept}"


def backup_database(src: Path, dest: Path, *, gzip: bool = False) -> BackupResult:
    """Copy the database at ``src`` to ``dest`` while a node may be writing to it.

    The copy goes to a temporary file next to ``dest``, is checked with ``PRAGMA
    integrity_check``, switched to a self-contained rollback journal (no ``-wal`` file needed),
    optionally gzipped (``dest`` gets ``.gz`` appended if it lacks it), and renamed into place,
    so ``dest`` is either absent or complete. Raises `StorageError` if ``src`` is missing or
    not a database, or the copy fails its check (nothing is left behind).
    """
    started = time.monotonic()
    src, dest = Path(src), Path(dest)
    if gzip and not dest.name.endswith(".gz"):
        dest = dest.with_name(dest.name + ".gz")
    if not src.is_file():
        raise StorageError(f"there is no state database at {src}")
    _check_magic(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    copy = _temp_name(dest, "backup")
    packed = _temp_name(dest, "gz")
    try:
        with sqlite_errors(f"backup of {src} failed"):
            source = sqlite3.connect(src, timeout=BUSY_TIMEOUT_MS / 1000)
            try:
                target = sqlite3.connect(private_file(copy))
                try:
                    source.backup(target)
                    pages = _finish_copy(target, copy)
                finally:
                    target.close()
            finally:
                source.close()
        if gzip:
            private_file(packed)
            with copy.open("rb") as raw, gzip_module.open(packed, "wb", compresslevel=6) as out:
                shutil.copyfileobj(raw, out, 1 << 20)
            _fsync(packed)
            os.replace(packed, dest)
        else:
            _fsync(copy)
            os.replace(copy, dest)
        _fsync_dir(dest.parent)
    finally:
        for leftover in (copy, packed):
            _unlink(leftover)
    return BackupResult(dest, dest.stat().st_size, pages, time.monotonic() - started)


def restore_database(src: Path, dest: Path) -> RestoreResult:
    """Replace the state file ``dest`` with the backup ``src`` (plain or gzipped).

    Refuses with `StateLockedError` while a node holds ``dest`` ("stop the node first"). Raises
    `StorageError`, leaving ``dest`` untouched, if ``src`` is not a SQLite database, fails
    ``PRAGMA integrity_check``, or has a schema newer than this Caxton. On success ``dest`` is
    replaced atomically, stale ``dest-wal``/``dest-shm`` files are removed, and the old file is
    kept as ``dest.before-restore`` (see `RestoreResult.previous`).
    """
    started = time.monotonic()
    src, dest = Path(src), Path(dest)
    if not src.is_file():
        raise StorageError(f"there is no backup at {src}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock = StateLock.acquire(dest, purpose="stop the node first")
    unpacked = _temp_name(dest, "unpacked")
    stage = _temp_name(dest, "restore")
    try:
        plain = src
        if _is_gzip(src):
            try:
                private_file(unpacked)
                with gzip_module.open(src, "rb") as raw, unpacked.open("wb") as out:
                    shutil.copyfileobj(raw, out, 1 << 20)
            except (OSError, EOFError) as exc:
                raise StorageError(f"{src} is not a readable gzip file: {exc}") from exc
            plain = unpacked
        _check_magic(plain, what=str(src))
        with sqlite_errors(f"{src} cannot be restored"):
            source = sqlite3.connect(plain, timeout=BUSY_TIMEOUT_MS / 1000)
            try:
                target = sqlite3.connect(private_file(stage))
                try:
                    source.backup(target)
                    version = int(target.execute("PRAGMA user_version").fetchone()[0])
                    if version > SCHEMA_VERSION:
                        raise StorageError(
                            f"{src} has schema version {version}, newer than this Caxton "
                            f"supports ({SCHEMA_VERSION}); restore it with a newer Caxton",
                            details={"version": version, "supported": SCHEMA_VERSION},
                        )
                    pages = _finish_copy(target, Path(str(src)))
                finally:
                    target.close()
            finally:
                source.close()
        _fsync(stage)
        previous = _keep_previous(dest)
        os.replace(stage, dest)
        _fsync_dir(dest.parent)
    finally:
        for leftover in (unpacked, stage):
            _unlink(leftover)
        lock.release()
    return RestoreResult(dest, src, previous, version, pages, time.monotonic() - started)


def _finish_copy(target: sqlite3.Connection, label: Path) -> int:
    """Check a fresh copy, make it a single self-contained file, return its page count."""
    rows = target.execute("PRAGMA integrity_check").fetchall()
    if [tuple(r) for r in rows] != [("ok",)]:
        problems = "; ".join(str(r[0]) for r in rows[:5])
        raise StorageError(f"{label} fails PRAGMA integrity_check: {problems}")
    target.execute("PRAGMA journal_mode = DELETE")
    return int(target.execute("PRAGMA page_count").fetchone()[0])


def _keep_previous(dest: Path) -> Path | None:
    """Fold ``dest``'s WAL into it, keep it as ``dest.before-restore``, drop -wal/-shm."""
    if not dest.exists():
        for suffix in ("-wal", "-shm"):
            _unlink(dest.with_name(dest.name + suffix))
        return None
    previous = dest.with_name(dest.name + ".before-restore")
    wal = dest.with_name(dest.name + "-wal")
    try:
        conn = sqlite3.connect(dest)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()  # the last connection to close removes the -wal file
    except sqlite3.Error:
        # A damaged state file (often why one restores): keep its WAL beside the copy.
        if wal.exists():
            os.replace(wal, previous.with_name(previous.name + "-wal"))
    temp = _temp_name(dest, "previous")
    try:
        os.link(dest, temp)
    except OSError:
        shutil.copy2(dest, temp)
    os.replace(temp, previous)
    for suffix in ("-wal", "-shm"):
        _unlink(dest.with_name(dest.name + suffix))
    return previous


def _check_magic(path: Path, *, what: str | None = None) -> None:
    with path.open("rb") as f:
        header = f.read(len(_SQLITE_MAGIC))
    if header != _SQLITE_MAGIC:
        raise StorageError(f"{what or path} is not a SQLite database")


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _temp_name(dest: Path, tag: str) -> Path:
    return dest.with_name(f".{dest.name}.{tag}-{os.getpid()}.tmp")


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        _fsync(path)
