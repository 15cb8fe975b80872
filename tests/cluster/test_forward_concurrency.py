"""Cross-node messages with several requests in flight: order and at-least-once still hold.

The policy may keep several requests in flight to one node but never two carrying the same
receiver; the bus may answer inbox requests concurrently; the receiving `Inbox` still handles
two batches that share a receiver one after the other; acknowledgements written behind are
never sent again nor lost.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import nats
import pytest

from caxton.clock import ManualClock
from caxton.cluster import NatsBus, NatsServer, wire
from caxton.cluster.bus import Bus
from caxton.cluster.forwarder import RELOAD_INTERVAL, Forwarder
from caxton.cluster.inbox import Inbox, RemoteClients
from caxton.cluster.outbox import RetryPolicy
from caxton.messaging.deadletters import Reason
from caxton.storage import Storage
from caxton.storage.messages import MessageBatch
from caxton.storage.outbox import DeliveryKey, OutboxEntry, OutboxRepository
from tests.nodeproc import free_port
from tests.support import eventually

from .conftest import coordination

if TYPE_CHECKING:
    from caxton.messaging import Messaging


def entry(seq: int, receiver: str, node: str = "n1") -> OutboxEntry:
    return OutboxEntry(seq, f"m{seq}", node, receiver, b"", 0.0, 0, 0.0)


def test_several_requests_to_a_node_never_share_a_receiver() -> None:
    policy = RetryPolicy(max_in_flight=2)
    first = policy.plan([entry(1, "a"), entry(2, "b")], now=0.0)
    assert [e.seq for e in first["n1"]] == [1, 2]
    # "a" and "b" are in flight: their next entries wait; "c" goes in a second request
    second = policy.plan([entry(3, "a"), entry(4, "c"), entry(5, "b")], now=0.0)
    assert [e.seq for e in second["n1"]] == [4]
    # two requests in flight to n1 now: a third waits, even for a free receiver
    assert policy.plan([entry(6, "d")], now=0.0) == {}
    policy.outcome("n1", second["n1"], {4}, now=0.0)
    policy.release("n1", second["n1"])
    assert [e.seq for e in policy.plan([entry(6, "d")], now=0.0)["n1"]] == [6]
    with pytest.raises(ValueError, match="max_in_flight"):
        RetryPolicy(max_in_flight=0)


async def test_nats_serve_answers_concurrently_only_when_asked(tmp_path: Path) -> None:
    port = free_port()
    async with NatsServer(coordination(port, seeds=(port,)), tmp_path / "a") as server:
        client = await nats.connect(**server.endpoint.connect_options())
        try:
            bus: Bus = NatsBus(client)
            release = asyncio.Event()
            started: list[bytes] = []

            async def slow(_: str, payload: bytes) -> bytes:
                started.append(payload)
                if payload == b"first":
                    await release.wait()
                return payload

            def started_first(times: int) -> Callable[[], Awaitable[bool]]:
                async def check() -> bool:
                    return started.count(b"first") == times

                return check

            unsubscribe = await bus.serve("together", slow, concurrent=True)
            await bus.serve("one.at.a.time", slow)
            first = asyncio.ensure_future(bus.request("together", b"first", within=5))
            await eventually(started_first(1), within=5)
            # the first is still being answered; the second is answered meanwhile
            assert await bus.request("together", b"second", within=2) == b"second"
            assert not first.done()
            release.set()
            assert await first == b"first"

            release.clear()
            blocked = asyncio.ensure_future(bus.request("one.at.a.time", b"first", within=5))
            await eventually(started_first(2), within=5)
            with pytest.raises(TimeoutError):
                await bus.request("one.at.a.time", b"second", within=0.3)
            release.set()
            assert await blocked == b"first"

            # ending the subscription cancels the answers still running (no reply: a retry)
            release.clear()
            pending = asyncio.ensure_future(bus.request("together", b"first", within=0.5))
            await eventually(started_first(3), within=5)
            await unsubscribe()
            with pytest.raises(TimeoutError):
                await pending
        finally:
            await client.close()


def body(mid: str, receiver: str) -> bytes:
    return json.dumps({"message_id": mid, "sender": "s", "receiver": receiver}).encode()


class Store:
    """``accept_nowait`` that records ids like the real one; with ``gate``, its commits wait
    until the test completes them (`commit_all`)."""

    def __init__(self, *, gate: bool = False) -> None:
        self.seen: set[DeliveryKey] = set()
        self.gate = gate
        self.uncommitted: list[tuple[Future[frozenset[DeliveryKey]], frozenset[DeliveryKey]]] = []

    def accept_nowait(
        self,
        keys: Sequence[DeliveryKey],
        build: Callable[[frozenset[DeliveryKey]], MessageBatch],
        now: float,
    ) -> Future[frozenset[DeliveryKey]]:
        duplicates = frozenset(k for k in keys if k in self.seen)
        self.seen.update(keys)
        build(duplicates)
        future: Future[frozenset[DeliveryKey]] = Future()
        if self.gate:
            self.uncommitted.append((future, duplicates))
        else:
            future.set_result(duplicates)
        return future

    def commit_all(self) -> None:
        for future, duplicates in self.uncommitted:
            future.set_result(duplicates)
        self.uncommitted.clear()


class Router:
    """Delivers at once, except that ``full`` receivers' mailboxes are full until ``room``."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, str]] = []
        self.full = {"x"}
        self.room = asyncio.Event()

    def is_local(self, name: str) -> bool:
        return name in {"x", "y"}

    def route_nowait(self, receiver: str, data: bytes, **_: Any) -> Reason | None:
        if receiver in self.full and not self.room.is_set():
            return Reason.MAILBOX_FULL
        self.delivered.append((receiver, json.loads(data)["message_id"]))
        return None

    async def wait_for_room(self, receiver: str, data: bytes, within: float) -> Reason | None:
        await asyncio.wait_for(self.room.wait(), within)
        return self.route_nowait(receiver, data)


class NoListeners:
    def __len__(self) -> int:
        return 0


def batch(*entries: tuple[int, str, str], fresh: bool = False, notify: bool = False) -> bytes:
    return wire.encode_batch(
        "a",
        [OutboxEntry(seq, mid, "b", to, body(mid, to), 0, 0, 0, fresh) for seq, mid, to in entries],
        notify=notify,
    )


def inbox_over(
    store: Store, router: Router, notify: Callable[[str, list[int]], None] | None = None
) -> Inbox:
    messaging = SimpleNamespace(
        router=router, storage=SimpleNamespace(outbox=store), bus=NoListeners()
    )
    return Inbox(
        "b",
        cast("Messaging", messaging),
        locate=lambda name: None,
        owner=lambda name: "b",
        clients=RemoteClients(),
        committed=lambda entries: None,
        notify=notify,
        mailbox_wait=5.0,
    )


async def test_first_sends_are_delivered_while_they_commit_and_acknowledged_after() -> None:
    """A batch of entries the origin never sent before cannot hold a duplicate: it is
    delivered at once; the acknowledgement (the origin deletes its copy) waits for the commit."""
    router, store = Router(), Store(gate=True)
    inbox = inbox_over(store, router)
    answer = asyncio.ensure_future(inbox.receive(batch((1, "m1", "y"), fresh=True)))

    async def delivered() -> bool:
        return router.delivered == [("y", "m1")]

    await eventually(delivered, within=2)
    await asyncio.sleep(0.01)
    assert not answer.done()
    store.commit_all()
    assert wire.decode_acks(await asyncio.wait_for(answer, 2)).committed == [1]

    # a retry (not fresh) waits for the commit, which tells duplicates apart
    retry = asyncio.ensure_future(inbox.receive(batch((1, "m1", "y"), (2, "m2", "y"), fresh=False)))
    await asyncio.sleep(0.01)
    assert router.delivered == [("y", "m1")]
    store.commit_all()
    assert wire.decode_acks(await asyncio.wait_for(retry, 2)).committed == [1, 2]
    assert router.delivered == [("y", "m1"), ("y", "m2")]
    assert inbox.duplicates == 1


async def test_a_receiver_s_next_batch_is_delivered_while_the_first_commits() -> None:
    """Batches of first sends are delivered in arrival order without waiting for each
    other's commits (the writer keeps their order, so ids still count as taken)."""
    router, store = Router(), Store(gate=True)
    inbox = inbox_over(store, router)
    first = asyncio.ensure_future(inbox.receive(batch((1, "m1", "y"), fresh=True)))
    second = asyncio.ensure_future(inbox.receive(batch((2, "m2", "y"), fresh=True)))

    async def both() -> bool:
        return router.delivered == [("y", "m1"), ("y", "m2")]

    await eventually(both, within=2)
    assert not first.done()
    assert not second.done()
    store.commit_all()
    assert wire.decode_acks(await asyncio.wait_for(first, 2)).committed == [1]
    assert wire.decode_acks(await asyncio.wait_for(second, 2)).committed == [2]


async def test_batches_sharing_a_receiver_are_delivered_in_their_order() -> None:
    """A request that timed out on the sender may still be running here (waiting for room in
    a full mailbox) when its retry (the same entries and later ones) arrives: the retry must
    not deliver the later ones first."""
    router, store = Router(), Store()
    inbox = inbox_over(store, router)
    slow = asyncio.ensure_future(inbox.receive(batch((1, "m1", "x"))))
    await asyncio.sleep(0.05)  # m1 is committed and waits for room in x's mailbox
    later = asyncio.ensure_future(inbox.receive(batch((1, "m1", "x"), (2, "m2", "x"))))
    # a batch for another receiver is not held up by them
    other = await asyncio.wait_for(inbox.receive(batch((3, "m3", "y"))), 2)
    assert wire.decode_acks(other).committed == [3]
    await asyncio.sleep(0.05)
    assert router.delivered == [("y", "m3")]  # m2 is not delivered before m1
    # the retry waits for its turn: not even committed while the first batch is delivered
    assert ("m2", "x") not in store.seen
    router.room.set()
    assert wire.decode_acks(await asyncio.wait_for(slow, 2)).committed == [1]
    assert wire.decode_acks(await asyncio.wait_for(later, 2)).committed == [1, 2]
    assert router.delivered == [("y", "m3"), ("x", "m1"), ("x", "m2")]
    assert inbox.duplicates == 1
    assert not inbox._busy


class GatedAcks:
    """The real outbox, whose deletes wait until ``open`` is set."""

    def __init__(self, outbox: OutboxRepository) -> None:
        self.outbox = outbox
        self.open = asyncio.Event()

    async def due(self, now: float, limit: int = 1000) -> list[OutboxEntry]:
        return await self.outbox.due(now, limit)

    async def entries(self, limit: int = -1) -> list[OutboxEntry]:
        return await self.outbox.entries(limit)

    async def depth(self) -> int:
        return await self.outbox.depth()

    async def ack(self, seqs: Iterable[int]) -> int:
        await self.open.wait()
        return await self.outbox.ack(seqs)

    async def reschedule(self, seqs: Iterable[int], next_at: float, attempts: int) -> int:
        return await self.outbox.reschedule(seqs, next_at, attempts)


class Receiver:
    """A node that commits in order, drops duplicates and acknowledges everything."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self.sent: list[int] = []

    async def send(self, node: str, entries: Sequence[OutboxEntry]) -> Collection[int]:
        self.sent.extend(e.seq for e in entries)
        for e in entries:
            if e.message_id not in self.committed:
                self.committed.append(e.message_id)
        return {e.seq for e in entries}


async def test_acknowledgements_written_behind_are_not_sent_again(tmp_path: Path) -> None:
    clock = ManualClock(wall=1000.0)
    remote = Receiver()
    async with await Storage.open(tmp_path / "local.db") as storage:
        gated = GatedAcks(storage.outbox)
        forwarder = Forwarder(
            cast("OutboxRepository", gated),
            remote.send,
            policy=RetryPolicy(max_in_flight=3),
            clock=clock,
            acks_behind=True,
        )
        rows = [(f"m{i}", "n1", "abc"[i % 3], b"x") for i in range(30)]
        await storage.outbox.enqueue(rows[:15], now=clock.wall())
        assert await forwarder.pump() == 1
        for _, task in forwarder.requests_in_flight:
            await task
        # acknowledged, not deleted yet: the receivers are free, nothing is sent twice
        forwarder.offer(await storage.outbox.enqueue(rows[15:], now=clock.wall()))
        assert await forwarder.pump() == 1
        for _, task in forwarder.requests_in_flight:
            await task
        assert await forwarder.pump() == 0
        clock.advance(RELOAD_INTERVAL)  # a load of the outbox still sees all 30 rows
        assert await forwarder.pump() == 0
        assert await storage.outbox.depth() == 30
        gated.open.set()
        await forwarder.settled()
        assert await storage.outbox.depth() == 0
        assert await forwarder.pump() == 0
        assert sorted(remote.sent) == list(range(1, 31))  # each sent once
        assert remote.committed == [f"m{i}" for i in range(30)]
        assert forwarder.statistics().acked == 30
        await forwarder.aclose()


async def test_first_sends_of_a_listening_origin_are_answered_before_the_commit() -> None:
    """An origin that hears commit notices gets its answer as soon as its first sends are
    delivered (entries pending), and a notice once they are committed: its next batch for the
    same receiver need not wait for this commit."""
    router, store = Router(), Store(gate=True)
    notices: list[tuple[str, list[int]]] = []
    inbox = inbox_over(store, router, notify=lambda origin, seqs: notices.append((origin, seqs)))
    answer = await asyncio.wait_for(
        inbox.receive(batch((1, "m1", "y"), (2, "m2", "y"), fresh=True, notify=True)), 2
    )
    acks = wire.decode_acks(answer)
    assert (acks.committed, acks.pending) == ([], [1, 2])
    assert router.delivered == [("y", "m1"), ("y", "m2")]
    assert notices == []  # not committed yet
    store.commit_all()

    async def announced() -> bool:
        return notices == [("a", [1, 2])]

    await eventually(announced, within=2)
    assert inbox.received == 2

    # a retry (not fresh) is answered after its commit, as committed, even when listening
    retry = asyncio.ensure_future(inbox.receive(batch((2, "m2", "y"), fresh=False, notify=True)))
    await asyncio.sleep(0.01)
    assert not retry.done()
    store.commit_all()
    acks = wire.decode_acks(await asyncio.wait_for(retry, 2))
    assert (acks.committed, acks.pending) == ([2], [])
    assert inbox.duplicates == 1
    assert notices == [("a", [1, 2])]


async def test_a_batch_delivered_but_not_committed_is_never_announced() -> None:
    """The owner's write failed after it delivered a batch answered as pending: no notice, so
    the origin sends the batch again (and keeps its rows meanwhile)."""
    router, store = Router(), Store(gate=True)
    notices: list[tuple[str, list[int]]] = []
    inbox = inbox_over(store, router, notify=lambda origin, seqs: notices.append((origin, seqs)))
    answer = await asyncio.wait_for(
        inbox.receive(batch((1, "m1", "y"), fresh=True, notify=True)), 2
    )
    assert wire.decode_acks(answer).pending == [1]
    for future, _ in store.uncommitted:
        future.set_exception(OSError("disk I/O error"))
    store.uncommitted.clear()
    await asyncio.sleep(0.05)
    assert notices == []
    assert inbox.received == 0
