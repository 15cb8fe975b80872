"""The forwarder's in-memory view of the outbox: rounds plan without reading the store while
it holds every row; it falls back to the store when it would grow too large, and loads again."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from pathlib import Path

from caxton.clock import ManualClock
from caxton.cluster.forwarder import RELOAD_INTERVAL, Forwarder
from caxton.cluster.outbox import RetryPolicy
from caxton.cluster.outbox_view import OutboxView
from caxton.storage import Storage
from caxton.storage.outbox import OutboxEntry


def entry(seq: int, receiver: str = "r", node: str = "b", next_at: float = 0.0) -> OutboxEntry:
    return OutboxEntry(seq, f"m{seq}", node, receiver, b"x" * 10, 0.0, 0, next_at)


def always(_: str) -> bool:
    return True


def never(_: str) -> bool:
    return False


def loaded(*entries: OutboxEntry, **bounds: int) -> OutboxView:
    view = OutboxView(**bounds)
    view.begin_load()
    assert view.end_load(list(entries), lambda row: False)
    return view


def test_an_incomplete_view_ignores_offers_and_a_load_makes_it_complete() -> None:
    view = OutboxView()
    view.offer([entry(1)])
    assert not view.complete
    assert len(view) == 0
    view.begin_load()
    view.offer([entry(3)])  # committed while the load was read: kept
    assert view.end_load([entry(1), entry(2)], lambda row: row.seq == 2)  # 2 is in flight
    assert [e.seq for e in view.due(0.0, always, never, 10)] == [1, 3]


def test_due_is_in_seq_order_across_nodes_and_bounded_per_node() -> None:
    view = loaded(
        entry(1, "r", node="b"),
        entry(2, "s", node="c"),
        entry(3, "r", node="b"),
        entry(4, "s", "c"),
    )
    assert [e.seq for e in view.due(0.0, always, never, 10)] == [1, 2, 3, 4]
    assert [e.seq for e in view.due(0.0, always, never, 1)] == [1, 2]
    assert [e.seq for e in view.due(0.0, lambda n: n == "c", never, 10)] == [2, 4]


def test_a_receiver_stops_at_a_row_not_due_or_in_flight() -> None:
    view = loaded(entry(1, "r", next_at=50.0), entry(2, "r"), entry(3, "s"), entry(4, "t"))
    assert [e.seq for e in view.due(10.0, always, lambda r: r == "t", 10)] == [3]
    assert [e.seq for e in view.due(50.0, always, never, 10)] == [1, 2, 3, 4]


def test_a_moved_receiver_waits_for_its_rows_on_the_old_node() -> None:
    view = loaded(entry(1, "r", node="b"), entry(2, "r", node="c"), entry(3, "s", node="c"))
    # b is backing off: r's later row for c must not overtake its row for b
    assert [e.seq for e in view.due(0.0, lambda n: n == "c", never, 10)] == [3]
    first = view.due(0.0, always, never, 10)
    assert [e.seq for e in first] == [1, 3]  # r's row for c still waits behind its row for b
    view.take(first)
    assert [e.seq for e in view.due(0.0, always, never, 10)] == [2]


def test_rows_put_back_after_a_failure_go_first_again() -> None:
    view = loaded(entry(1), entry(2), entry(3))
    sent = view.due(0.0, always, never, 2)
    view.take(sent)
    view.offer([entry(4)])
    view.put_back(sent)
    assert [e.seq for e in view.due(0.0, always, never, 10)] == [1, 2, 3, 4]


def test_the_view_gives_up_when_it_would_grow_too_large() -> None:
    view = loaded(entry(1), entry(2), max_entries=3)
    view.offer([entry(3), entry(4)])
    assert not view.complete  # the store has them all
    assert len(view) == 0
    view.begin_load()
    assert not view.end_load(None, lambda row: False)  # too many to load
    view.begin_load()
    assert view.end_load([entry(4)], lambda row: False)
    assert view.bytes == 10


class Receiver:
    """The other node: acknowledges everything it gets."""

    def __init__(self) -> None:
        self.got: list[str] = []

    async def send(self, node: str, entries: Sequence[OutboxEntry]) -> Collection[int]:
        self.got.extend(e.message_id for e in entries)
        return {e.seq for e in entries}


async def settle(forwarder: Forwarder) -> None:
    for _ in range(20):
        await asyncio.sleep(0)
    for _, task in forwarder.requests_in_flight:
        await task


async def test_offered_rows_are_sent_without_reading_the_store(tmp_path: Path) -> None:
    async with await Storage.open(tmp_path / "local.db") as storage:
        receiver, clock = Receiver(), ManualClock(wall=1000.0)
        forwarder = Forwarder(storage.outbox, receiver.send, clock=clock)
        await forwarder.pump()  # the first round loads the (empty) outbox
        assert forwarder.view.complete
        reads = storage.statistics().reads
        for i in range(5):
            rows = [(f"m{i}", "b", "r", b"x")]
            forwarder.offer(await storage.outbox.enqueue(rows, now=clock.wall()))
            await forwarder.pump()
            await settle(forwarder)
        assert receiver.got == [f"m{i}" for i in range(5)]
        assert storage.statistics().reads == reads
        assert forwarder.memory_rounds == 6  # with the first
        assert forwarder.store_rounds == 0
        assert await storage.outbox.depth() == 0


async def test_rows_nobody_offered_are_found_by_the_next_load(tmp_path: Path) -> None:
    async with await Storage.open(tmp_path / "local.db") as storage:
        receiver, clock = Receiver(), ManualClock(wall=1000.0)
        forwarder = Forwarder(storage.outbox, receiver.send, clock=clock)
        await storage.outbox.enqueue([("m0", "b", "r", b"x")], now=clock.wall())  # last run's
        await forwarder.pump()
        await settle(forwarder)
        assert receiver.got == ["m0"]
        await storage.outbox.enqueue([("m1", "b", "r", b"x")], now=clock.wall())  # no offer
        clock.advance(RELOAD_INTERVAL)
        await forwarder.pump()
        await settle(forwarder)
        assert receiver.got == ["m0", "m1"]


async def test_a_large_backlog_is_read_from_the_store_until_it_fits(tmp_path: Path) -> None:
    async with await Storage.open(tmp_path / "local.db") as storage:
        receiver, clock = Receiver(), ManualClock(wall=1000.0)
        forwarder = Forwarder(
            storage.outbox, receiver.send, clock=clock, policy=RetryPolicy(max_request=4)
        )
        forwarder.view = OutboxView(max_entries=5)
        rows = [(f"m{i}", "b", "r", b"x") for i in range(12)]
        forwarder.offer(await storage.outbox.enqueue(rows, now=clock.wall()))
        for _ in range(3):
            await forwarder.pump()
            await settle(forwarder)
        assert forwarder.store_rounds >= 1
        assert not forwarder.view.complete
        clock.advance(RELOAD_INTERVAL)
        await forwarder.pump()
        await settle(forwarder)
        assert receiver.got == [f"m{i}" for i in range(12)]
        assert forwarder.view.complete
