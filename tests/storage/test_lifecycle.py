"""Opening, migrating, locking and closing the state store."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from caxton.errors import StateLockedError, StorageError
from caxton.storage import SCHEMA_VERSION, Connection, Storage, StorageState, is_locked
from caxton.storage.schema import MIGRATIONS
from tests.storage import processes
from tests.support import eventually

TABLES = {"meta", "modules", "agents", "agent_versions", "kv", "snapshots", "scheduled"}


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


async def test_open_creates_parent_dirs_and_migrates_an_empty_database(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "local.db"
    async with await Storage.open(path) as storage:
        assert storage.state is StorageState.RUNNING
        assert len(storage.node_id) == 36
    assert tables(path) >= TABLES
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_reopening_keeps_the_node_id_and_applies_nothing_twice(state_path: Path) -> None:
    async with await Storage.open(state_path) as storage:
        node_id = storage.node_id
    async with await Storage.open(state_path) as storage:
        assert storage.node_id == node_id
        count = await storage.read(lambda c: c.fetch_value("SELECT COUNT(*) FROM meta"))
        assert count == 2


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


async def test_a_database_from_a_newer_caxton_is_refused(state_path: Path) -> None:
    async with await Storage.open(state_path):
        pass
    with sqlite3.connect(state_path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match="newer Caxton"):
        await Storage.open(state_path)
    assert is_locked(state_path) is None  # the failed open released the lock


def test_a_file_that_is_not_a_database_is_refused(state_path: Path) -> None:
    state_path.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(StorageError, match="not a database"):
        Storage.open_sync(state_path)


async def test_journal_mode_comes_from_the_config(state_path: Path) -> None:
    async with await Storage.open(state_path, journal_mode="DELETE"):
        pass
    with sqlite3.connect(state_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


async def test_aclose_is_idempotent_and_the_store_cannot_be_reused(state_path: Path) -> None:
    storage = await Storage.open(state_path)
    await storage.aclose()
    await storage.aclose()
    assert storage.state is StorageState.CLOSED
    with pytest.raises(StorageError, match="closed"):
        await storage.write(lambda c: None)
    with pytest.raises(StorageError, match="closed"):
        await storage.read(lambda c: None)
    with pytest.raises(StorageError, match="cannot be reopened"):
        await storage.start()


async def test_async_with_on_an_unstarted_store_opens_it(state_path: Path) -> None:
    async with Storage(state_path) as storage:
        running = storage.state
    assert running is StorageState.RUNNING
    assert storage.state is StorageState.CLOSED


async def test_a_clean_close_leaves_no_wal_behind(state_path: Path) -> None:
    """The state file alone is the whole state after a stop (the guide restores by copying it),
    also when reads were still running as the store was closed."""
    storage = await Storage.open(state_path)
    await storage.write(lambda c: c.execute("CREATE TABLE t (x)"))
    inside = threading.Semaphore(0)

    def slow_read(conn: Connection) -> int:
        """A read transaction held open for a while (reads run in one; a long page, say)."""
        value = int(conn.fetch_value("SELECT COUNT(*) FROM agents"))
        inside.release()
        time.sleep(0.2)  # the long page
        return value

    reads = [asyncio.ensure_future(storage.read(slow_read)) for _ in range(2)]
    for _ in reads:  # both reads are inside their transactions now
        assert await asyncio.to_thread(inside.acquire, timeout=5)
    await storage.aclose()
    assert [await r for r in reads] == [0, 0]  # queued reads finish before the close
    leftovers = [p.name for p in state_path.parent.iterdir() if p.name.endswith(("-wal", "-shm"))]
    assert leftovers == []


async def test_aclose_flushes_every_queued_write(storage: Storage, agent: str) -> None:
    futures = [storage.kv.set_nowait(agent, b"%d" % i, b"v") for i in range(2000)]
    await storage.aclose()
    assert all(f.done() and f.exception() is None for f in futures)
    reopened = await Storage.open(storage.path)
    try:
        assert len(await reopened.kv.load(agent)) == 2000
    finally:
        await reopened.aclose()


async def test_a_second_store_in_the_same_process_is_locked_out(storage: Storage) -> None:
    with pytest.raises(StateLockedError) as info:
        await Storage.open(storage.path)
    assert info.value.message == f"a Caxton node (pid {os.getpid()}) is using {storage.path}"
    assert is_locked(storage.path) == os.getpid()


async def test_the_lock_is_released_on_close(state_path: Path) -> None:
    assert is_locked(state_path) is None
    async with await Storage.open(state_path):
        assert is_locked(state_path) == os.getpid()
    assert is_locked(state_path) is None


async def test_a_store_held_by_another_process_is_refused_with_its_pid(state_path: Path) -> None:
    proc = processes.start("hold", state_path)
    try:
        with pytest.raises(StateLockedError) as info:
            await Storage.open(state_path)
        assert f"a Caxton node (pid {proc.pid}) is using {state_path}" == info.value.message
        assert info.value.details == {"path": str(state_path), "pid": proc.pid}
        assert is_locked(state_path) == proc.pid
    finally:
        proc.communicate("", timeout=10)
    assert proc.returncode == 0
    async with await Storage.open(state_path):  # free again once the child closed it
        pass


async def test_cancelling_open_does_not_leave_the_lock_held(state_path: Path) -> None:
    opening = asyncio.create_task(Storage.open(state_path))
    await asyncio.sleep(0)
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    # The half-opened store closes itself once its opening finishes; then the file is free.

    async def reopened() -> bool:
        try:
            storage = await Storage.open(state_path)
        except StateLockedError:
            return False
        await storage.aclose()
        return True

    await eventually(reopened, within=3.0, what="the cancelled open released the state lock")
