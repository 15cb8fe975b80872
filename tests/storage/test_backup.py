"""Online backup while a node writes, and restore with the node stopped."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from caxton.errors import StateLockedError, StorageError
from caxton.storage import (
    SCHEMA_VERSION,
    AgentRecord,
    Storage,
    backup_database,
    is_locked,
    restore_database,
)
from tests.storage import processes


def written_keys(path: Path) -> list[int]:
    """The kv keys of agent ``w`` in a database file, after checking the file is sound."""
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = conn.execute("SELECT key FROM kv WHERE name = 'w'").fetchall()
    return sorted(int.from_bytes(key, "big") for (key,) in rows)


@pytest.fixture
def busy_node(state_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process that keeps writing to ``state_path`` (and holds its lock)."""
    proc = processes.start("write", state_path)
    processes.read_acks(proc, 500)  # it is well under way
    yield proc
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)


def test_backup_database_while_a_node_writes(
    busy_node: subprocess.Popen[str], state_path: Path, tmp_path: Path
) -> None:
    first = backup_database(state_path, tmp_path / "backups" / "one.db")
    processes.read_acks(busy_node, 500)
    second = backup_database(state_path, tmp_path / "backups" / "two.db")
    assert is_locked(state_path) == busy_node.pid  # the backup never took the node's lock
    assert first.path == tmp_path / "backups" / "one.db"
    assert first.bytes == first.path.stat().st_size
    assert first.pages > 0
    assert first.duration >= 0
    one, two = written_keys(first.path), written_keys(second.path)
    assert one == list(range(len(one)))  # a consistent prefix of the node's writes
    assert two == list(range(len(two)))
    assert len(two) > len(one) >= 500
    assert not first.path.with_name("one.db-wal").exists()  # the copy is self-contained
    assert sorted(p.name for p in first.path.parent.iterdir()) == ["one.db", "two.db"]


def test_the_sqlite3_cli_backup_of_the_seed_script_works_while_a_node_writes(
    busy_node: subprocess.Popen[str], state_path: Path, tmp_path: Path
) -> None:
    copies = [tmp_path / f"state_{i}.db" for i in range(3)]
    for copy in copies:
        subprocess.run(["sqlite3", str(state_path), f".backup '{copy}'"], check=True, timeout=30)
        processes.read_acks(busy_node, 100)
    counts = []
    for copy in copies:
        keys = written_keys(copy)
        assert keys == list(range(len(keys)))
        counts.append(len(keys))
    assert counts == sorted(counts)
    assert counts[0] >= 500


def test_gzip_backup_gets_a_gz_name_and_restores(storage_file: Path, tmp_path: Path) -> None:
    result = backup_database(storage_file, tmp_path / "state.db", gzip=True)
    assert result.path == tmp_path / "state.db.gz"
    with gzip.open(result.path) as f:
        assert f.read(16) == b"SQLite format 3\x00"
    target = tmp_path / "restored" / "local.db"
    restored = restore_database(result.path, target)
    assert restored.previous is None
    assert restored.schema_version == SCHEMA_VERSION
    storage = Storage.open_sync(target)
    try:
        assert storage.agents.get_sync("kept") is not None
        assert storage.kv.load_sync("kept") == {b"k": b"v"}
    finally:
        storage.close()


def test_backup_of_a_missing_or_foreign_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no state database"):
        backup_database(tmp_path / "missing.db", tmp_path / "out.db")
    junk = tmp_path / "junk.db"
    junk.write_text("hello")
    with pytest.raises(StorageError, match="not a SQLite database"):
        backup_database(junk, tmp_path / "out.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.db"]


def test_restore_refuses_while_a_node_runs(
    busy_node: subprocess.Popen[str], state_path: Path, storage_file: Path
) -> None:
    with pytest.raises(StateLockedError) as info:
        restore_database(storage_file, state_path)
    assert str(busy_node.pid) in info.value.message
    assert "stop the node first" in info.value.message


def test_restore_replaces_the_state_and_keeps_the_previous_file(
    storage_file: Path, tmp_path: Path
) -> None:
    backup = backup_database(storage_file, tmp_path / "backup.db").path
    storage = Storage.open_sync(storage_file)
    try:
        storage.write_sync(lambda c: c.execute("DELETE FROM kv"))  # lands in the WAL
        wal = storage_file.with_name(storage_file.name + "-wal")
        assert wal.exists()
        result = restore_database(backup, storage_file.with_name("other.db"))
        assert result.previous is None
    finally:
        storage.close()
    stale_wal = storage_file.with_name(storage_file.name + "-wal")
    stale_wal.write_bytes(b"garbage that must not be replayed")
    result = restore_database(backup, storage_file)
    assert result.previous == storage_file.with_name("local.db.before-restore")
    assert str(result.previous) in result.message
    assert not stale_wal.exists()
    assert is_locked(storage_file) is None
    with sqlite3.connect(result.previous) as conn:  # the replaced state, WAL folded in
        assert conn.execute("SELECT COUNT(*) FROM kv").fetchone() == (0,)
    storage = Storage.open_sync(storage_file)
    try:
        assert storage.kv.load_sync("kept") == {b"k": b"v"}
    finally:
        storage.close()


def test_restore_checks_the_source(storage_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "target.db"
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 64)
    with pytest.raises(StorageError, match="not a SQLite database"):
        restore_database(junk, target)
    bad_gzip = tmp_path / "bad.db.gz"
    bad_gzip.write_bytes(b"\x1f\x8b" + os.urandom(64))
    with pytest.raises(StorageError, match="gzip"):
        restore_database(bad_gzip, target)
    newer = tmp_path / "newer.db"
    backup_database(storage_file, newer)
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(StorageError, match="newer than this Caxton"):
        restore_database(newer, target)
    corrupt = tmp_path / "corrupt.db"
    data = bytearray(storage_file.read_bytes())
    data[4096 * 3 : 4096 * 3 + 200] = os.urandom(200)  # inside a b-tree page
    corrupt.write_bytes(bytes(data))
    with pytest.raises(StorageError):
        restore_database(corrupt, target)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.fixture
def storage_file(tmp_path: Path) -> Path:
    """A closed state database with agent ``kept`` and one kv pair."""
    path = tmp_path / "kept" / "local.db"
    storage = Storage.open_sync(path)
    try:
        asyncio.run(storage.agents.create(AgentRecord(name="kept"), b"\0asm"))
        storage.kv.set_nowait("kept", b"k", b"v").result(5)
    finally:
        storage.close()
    return path


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_state_file_and_its_backups_are_readable_by_their_owner_only(
    tmp_path: Path,
) -> None:
    # They hold agents' key/value data and messages: not for other users of the machine.
    old = os.umask(0o022)
    try:
        path = tmp_path / "fresh" / "local.db"
        storage = Storage.open_sync(path)
        try:
            asyncio.run(storage.agents.create(AgentRecord(name="kept"), b"\0asm"))
            assert _mode(path) == 0o600
            assert _mode(path.with_name("local.db-wal")) == 0o600
            assert _mode(path.parent) == 0o700
        finally:
            storage.close()
        plain = backup_database(path, tmp_path / "backups" / "b.db").path
        packed = backup_database(path, tmp_path / "backups" / "b.db", gzip=True).path
        assert (_mode(plain), _mode(packed)) == (0o600, 0o600)
        restored = tmp_path / "restored" / "local.db"
        restore_database(packed, restored)
        assert _mode(restored) == 0o600
    finally:
        os.umask(old)


def test_an_existing_state_file_keeps_the_mode_its_operator_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "local.db"
    Storage.open_sync(path).close()
    path.chmod(0o640)
    Storage.open_sync(path).close()
    assert _mode(path) == 0o640
