"""The cross-node outbox and the received ids (storage.outbox), on real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from caxton.storage import SCHEMA_VERSION, Storage
from caxton.storage._connection import Connection
from caxton.storage.messages import MessageBatch
from caxton.storage.outbox import seen_or_record_in
from caxton.storage.schema import MIGRATIONS


def row(i: int, receiver: str = "r1", node: str = "n1") -> tuple[str, str, str, bytes]:
    return (f"m{i}", node, receiver, b"body-%d" % i)


async def test_enqueue_due_ack_keeps_insertion_order(storage: Storage) -> None:
    added = await storage.outbox.enqueue([row(i, f"r{i % 3}") for i in range(9)], now=100.0)
    assert [(e.seq, e.message_id) for e in added] == [(i + 1, f"m{i}") for i in range(9)]
    due = await storage.outbox.due(100.0)
    assert [e.message_id for e in due] == [f"m{i}" for i in range(9)]
    assert due[0].node == "n1"
    assert due[0].body == b"body-0"
    assert due[0].enqueued_at == 100.0
    assert [e.message_id for e in await storage.outbox.due(99.0)] == []  # not due yet
    assert [e.message_id for e in await storage.outbox.due(100.0, limit=2)] == ["m0", "m1"]
    assert await storage.outbox.ack([due[0].seq, due[4].seq, 10_000]) == 2
    assert [e.message_id for e in await storage.outbox.entries()] == [
        "m1",
        "m2",
        "m3",
        "m5",
        "m6",
        "m7",
        "m8",
    ]
    assert await storage.outbox.depth() == 7
    assert await storage.outbox.depth("n1") == 7
    assert await storage.outbox.depth("n2") == 0


async def test_enqueueing_a_delivery_again_keeps_its_first_place(storage: Storage) -> None:
    await storage.outbox.enqueue([row(1), row(2)], now=1.0)
    assert await storage.outbox.enqueue([row(1)], now=2.0) == []
    assert [e.message_id for e in await storage.outbox.entries()] == ["m1", "m2"]
    # the same message to another receiver is another delivery
    assert len(await storage.outbox.enqueue([row(1, "r2")], now=2.0)) == 1
    # a write with old and new rows hands back the new ones with the seq they were given
    added = await storage.outbox.enqueue([row(2), row(3), row(1), row(4)], now=3.0)
    stored = {(e.message_id, e.receiver): e.seq for e in await storage.outbox.entries()}
    assert [(e.message_id, e.seq) for e in added] == [
        ("m3", stored[("m3", "r1")]),
        ("m4", stored[("m4", "r1")]),
    ]


async def test_a_rescheduled_entry_holds_back_later_entries_of_its_receiver_only(
    storage: Storage,
) -> None:
    await storage.outbox.enqueue([row(1, "a"), row(2, "b")], now=10.0)
    first_a = (await storage.outbox.entries())[0]
    assert await storage.outbox.reschedule([first_a.seq], next_at=50.0, attempts=3) == 1
    await storage.outbox.enqueue([row(3, "a"), row(4, "b")], now=11.0)
    # m3 is due by its own time but m1 (same receiver, earlier) is not: m3 waits
    assert [e.message_id for e in await storage.outbox.due(20.0)] == ["m2", "m4"]
    due = await storage.outbox.due(50.0)
    assert [e.message_id for e in due] == ["m1", "m2", "m3", "m4"]
    assert due[0].attempts == 3
    assert due[0].next_attempt_at == 50.0


async def test_depth_and_oldest_age(storage: Storage) -> None:
    assert await storage.outbox.oldest_age(now=500.0) == 0.0
    await storage.outbox.enqueue([row(1)], now=100.0)
    await storage.outbox.enqueue([row(2)], now=300.0)
    assert await storage.outbox.oldest_age(now=500.0) == 400.0
    assert await storage.outbox.depth() == 2


async def test_seen_or_record_returns_duplicates_and_records_new_ids(storage: Storage) -> None:
    keys = [("m1", "a"), ("m2", "a"), ("m1", "b")]
    assert await storage.outbox.seen_or_record(keys, now=1.0) == frozenset()
    again = await storage.outbox.seen_or_record([("m1", "a"), ("m3", "a"), ("m3", "a")], now=2.0)
    assert again == {("m1", "a"), ("m3", "a")}  # m3 new the first time, a duplicate the second
    assert await storage.outbox.received_count() == 4


async def test_concurrent_dedup_of_the_same_id_lets_exactly_one_through(storage: Storage) -> None:
    """Many writers racing to record the same ids: each id is new for exactly one of them."""
    keys = [(f"m{i}", "a") for i in range(50)]

    def worker() -> frozenset[tuple[str, str]]:
        return storage.write_sync(lambda c: seen_or_record_in(c, keys, 1.0))

    results = await asyncio.gather(*(asyncio.to_thread(worker) for _ in range(8)))
    new_counts = [len(keys) - len(dups) for dups in results]
    assert sum(new_counts) == len(keys)


async def test_accept_records_ids_and_writes_the_batch_in_one_transaction(
    storage: Storage,
) -> None:
    keys = [("m1", "a"), ("m2", "a")]
    bodies = {"m1": b'{"n":1}', "m2": b'{"n":2}'}

    def build(duplicates: frozenset[tuple[str, str]]) -> MessageBatch:
        fresh = [k for k in keys if k not in duplicates]
        return MessageBatch(pending=[(mid, rcv, bodies[mid]) for mid, rcv in fresh])

    await storage.outbox.seen_or_record([("m1", "a")], now=1.0)
    assert await storage.outbox.accept(keys, build, now=2.0) == {("m1", "a")}
    pending = await storage.messages.pending()
    assert [(p.message_id, p.receiver) for p in pending] == [("m2", "a")]

    def failing(duplicates: frozenset[tuple[str, str]]) -> MessageBatch:
        raise RuntimeError("building failed")

    with pytest.raises(RuntimeError):
        await storage.outbox.accept([("m9", "a")], failing, now=3.0)
    # the id of a message that was not committed is not recorded either
    assert await storage.outbox.seen_or_record([("m9", "a")], now=4.0) == frozenset()


async def test_a_message_batch_enqueues_outbox_rows_with_its_history(storage: Storage) -> None:
    batch = MessageBatch(chunks=[("c1", 1, b'[{"x":1}]')], outbox=[row(1, "far")])
    await storage.messages.write(batch)
    entries = await storage.outbox.entries()
    assert [(e.message_id, e.receiver) for e in entries] == [("m1", "far")]
    _chunks, _, total = await storage.messages.conversation("c1")
    assert total == 1


async def test_prune_received_by_age_and_count(storage: Storage) -> None:
    await storage.outbox.seen_or_record([(f"m{i}", "a") for i in range(10)], now=100.0)
    await storage.outbox.seen_or_record([(f"n{i}", "a") for i in range(10)], now=200.0)
    assert await storage.outbox.prune_received(now=250.0, max_age=100.0, max_rows=100) == 10
    assert await storage.outbox.received_count() == 10
    await storage.outbox.seen_or_record([(f"o{i}", "a") for i in range(5)], now=260.0)
    assert await storage.outbox.prune_received(now=260.0, max_age=100.0, max_rows=5) == 10
    assert await storage.outbox.seen_or_record([("o1", "a"), ("n1", "a")], now=261.0) == {
        ("o1", "a")
    }


async def test_committed_rows_survive_a_close_and_reopen(state_path: Path) -> None:
    async with await Storage.open(state_path) as storage:
        await storage.outbox.enqueue([row(i) for i in range(5)], now=1.0)
        await storage.outbox.seen_or_record([("x", "a")], now=1.0)
        storage.outbox.enqueue_nowait([row(5)], now=1.0).result(5)
    async with await Storage.open(state_path) as storage:
        assert [e.message_id for e in await storage.outbox.due(1.0)] == [f"m{i}" for i in range(6)]
        assert await storage.outbox.seen_or_record([("x", "a")]) == {("x", "a")}


def test_committed_rows_survive_a_kill_of_the_process(state_path: Path) -> None:
    """kill -9 model: a child process commits rows and dies without closing anything."""
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from caxton.storage import Storage\n"
        "s = Storage.open_sync(Path(sys.argv[1]))\n"
        "s.outbox.enqueue_nowait([(f'm{i}', 'n1', 'r', b'b') for i in range(100)], 1.0).result()\n"
        "os._exit(0)\n"  # no close, no checkpoint, no lock release
    )
    subprocess.run([sys.executable, "-c", code, str(state_path)], check=True, timeout=60)
    storage = Storage.open_sync(state_path)
    try:
        assert len(storage.read_sync(lambda c: c.fetch_all("SELECT seq FROM outbox"))) == 100
    finally:
        storage.close()


async def test_a_database_of_the_previous_version_is_upgraded(state_path: Path) -> None:
    """A version-2 database (before the outbox) keeps its data and gains the new tables."""
    assert SCHEMA_VERSION == 3
    conn = sqlite3.connect(state_path, isolation_level=None)
    wrapped = Connection(conn)
    for migration in MIGRATIONS[:2]:
        migration.apply(wrapped)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO pending_deliveries(message_id, receiver, created_at, body)"
        " VALUES ('old', 'a', 1.0, x'00')"
    )
    conn.close()
    async with await Storage.open(state_path) as storage:
        assert [p.message_id for p in await storage.messages.pending()] == ["old"]
        await storage.outbox.enqueue([row(1)], now=1.0)
        assert await storage.outbox.depth() == 1
        assert await storage.outbox.seen_or_record([("m1", "a")]) == frozenset()
    with sqlite3.connect(state_path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 3
