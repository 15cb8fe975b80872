"""Group commit, per-op failure, ordering, non-blocking reads and crash durability."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import pytest

from caxton.errors import StorageError
from caxton.storage import Connection, Storage
from tests.storage import processes


def create_table(c: Connection) -> None:
    c.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, source TEXT, seq INTEGER)")


async def test_concurrent_writes_share_commits(storage: Storage) -> None:
    await storage.write(create_table)
    before = storage.statistics()

    async def insert(i: int) -> int:
        return await storage.write(
            lambda c: c.insert("INSERT INTO t(id, seq) VALUES (?, ?)", (i, i))
        )

    ids = await asyncio.gather(*(insert(i) for i in range(500)))
    assert sorted(ids) == list(range(500))
    stats = storage.statistics()
    assert stats.ops - before.ops == 500
    assert stats.commits - before.commits <= 50  # group commit: far fewer commits than ops
    assert stats.max_batch >= 10
    assert stats.queue_depth == 0
    assert await storage.read(lambda c: c.fetch_value("SELECT COUNT(*) FROM t")) == 500


async def test_a_failing_write_fails_alone_in_its_batch(storage: Storage, agent: str) -> None:
    gate = threading.Event()
    blocker = storage.write_nowait(lambda c: gate.wait(5))  # holds the writer so a batch forms

    def half_done_then_fail(c: Connection) -> None:
        c.execute("INSERT INTO kv(name, key, value) VALUES (?, ?, ?)", (agent, b"2", b"x"))
        raise ValueError("the agent changed its mind")

    first = storage.kv.set_nowait(agent, b"1", b"x")
    failing = storage.write_nowait(half_done_then_fail)
    constraint = storage.kv.set_nowait("no-such-agent", b"k", b"x")  # foreign key violation
    last = storage.kv.set_nowait(agent, b"3", b"x")
    gate.set()
    blocker.result(5)
    assert first.result(5) is None
    assert last.result(5) is None
    with pytest.raises(ValueError, match="changed its mind"):
        failing.result(5)
    with pytest.raises(StorageError, match="FOREIGN KEY"):
        constraint.result(5)
    assert await storage.kv.load(agent) == {b"1": b"x", b"3": b"x"}
    stats = storage.statistics()
    assert stats.failed_ops == 2
    assert stats.max_batch >= 4


async def test_writes_from_one_thread_apply_in_submission_order(storage: Storage) -> None:
    await storage.write(create_table)

    def insert(source: str, seq: int) -> Callable[[Connection], int]:
        return lambda c: c.insert("INSERT INTO t(source, seq) VALUES (?, ?)", (source, seq))

    def submit_all(source: str) -> list[Future[int]]:
        return [storage.write_nowait(insert(source, seq)) for seq in range(300)]

    threads_futures: list[list[Future[int]]] = []
    threads = [
        threading.Thread(target=lambda s=s: threads_futures.append(submit_all(s)))
        for s in ("a", "b", "c", "d")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for futures in threads_futures:
        for future in futures:
            future.result(10)
    rows = await storage.read(lambda c: c.fetch_all("SELECT source, seq FROM t ORDER BY id"))
    for source in "abcd":
        assert [seq for s, seq in rows if s == source] == list(range(300))


async def test_write_sync_and_read_sync_from_a_worker_thread(storage: Storage) -> None:
    await storage.write(create_table)

    def worker() -> int:
        storage.write_sync(lambda c: c.execute("INSERT INTO t(id) VALUES (7)"))
        return int(storage.read_sync(lambda c: c.fetch_value("SELECT COUNT(*) FROM t")))

    assert await asyncio.to_thread(worker) == 1


async def test_blocking_calls_are_refused_on_the_event_loop(storage: Storage) -> None:
    with pytest.raises(RuntimeError, match=r"await storage\.write"):
        storage.write_sync(lambda c: None)
    with pytest.raises(RuntimeError, match=r"await storage\.read"):
        storage.read_sync(lambda c: None)


async def test_write_sync_inside_a_write_is_refused(storage: Storage) -> None:
    with pytest.raises(RuntimeError, match="deadlock"):
        await storage.write(lambda c: storage.write_sync(lambda c2: None))


async def test_reads_cannot_write(storage: Storage, agent: str) -> None:
    with pytest.raises(StorageError, match=r"readonly|read-only|query_only"):
        await storage.read(lambda c: c.execute("DELETE FROM agents"))
    assert await storage.agents.count() == 1


async def test_a_long_read_does_not_block_the_event_loop(storage: Storage) -> None:
    long_query = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1500000)"
        " SELECT SUM(x) FROM c"
    )
    worst_lag = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst_lag
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.005)  # how much later than this it wakes is the lag
            worst_lag = max(worst_lag, time.perf_counter() - started - 0.005)

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    total = await storage.read(lambda c: c.fetch_value(long_query))
    read_seconds = time.perf_counter() - started
    stop.set()
    await task
    assert total == 1500000 * 1500001 // 2
    assert read_seconds > 0.2  # long enough that a blocked loop would show it
    assert worst_lag < read_seconds / 4


def test_acknowledged_writes_survive_sigkill(state_path: Path) -> None:
    proc = processes.start("write", state_path)
    try:
        acked = processes.read_acks(proc, 2000)
    finally:
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
    acked += [int(line) for line in out.split()]  # printed after their ack, before the kill
    assert proc.returncode == -signal.SIGKILL
    storage = Storage.open_sync(state_path)  # the kernel released the dead node's lock
    try:
        keys = {int.from_bytes(k, "big") for k in storage.kv.load_sync("w")}
    finally:
        storage.close()
    assert set(acked) <= keys
    assert keys == set(range(len(keys)))  # what survived is a prefix of the submissions
