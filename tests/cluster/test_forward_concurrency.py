"""Cross-node messages with several requests in flight: order and at-least-once still hold.

The policy may keep several requests in flight to one node but never two carrying the same
receiver; the bus may answer inbox requests concurrently; the receiving `Inbox` still handles
two batches that share a receiver one after the other; acknowledgements written behind are
never sent again nor lost.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nats
import pytest

from caxton.clock import ManualClock
from caxton.cluster import NatsBus, NatsServer, wire
from caxton.cluster.bus import Bus
from caxton.cluster.forwarder import Forwarder
from caxton.cluster.inbox import Inbox, RemoteClients
from caxton.cluster.outbox import RetryPolicy
from caxton.storage import Storage
from caxton.storage.messages import MessageBatch
from caxton.storage.outbox import DeliveryKey, OutboxEntry
from tests.nodeproc import free_port
from tests.support import eventually

from .conftest import coordination


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


class SlowStore:
    """``accept`` that records ids like the real one and waits for a gate per batch."""

    def __init__(self) -> None:
        self.seen: set[DeliveryKey] = set()
        self.gates: dict[str, asyncio.Event] = {}

    async def accept(
        self,
        keys: Sequence[DeliveryKey],
        build: Callable[[frozenset[DeliveryKey]], MessageBatch],
        now: float | None = None,
    ) -> frozenset[DeliveryKey]:
        gate = self.gates.get(keys[0][0])
        if gate is not None:
            await gate.wait()
        duplicates = frozenset(k for k in keys if k in self.seen)
        self.seen.update(keys)
        build(duplicates)
        return duplicates


def fake_messaging(store: SlowStore, delivered: list[tuple[str, str]]) -> Any:
    def route_nowait(receiver: str, data: bytes, **_: Any) -> None:
        delivered.append((receiver, json.loads(data)["message_id"]))

    router = SimpleNamespace(is_local=lambda name: name in {"x", "y"}, route_nowait=route_nowait)
    return SimpleNamespace(router=router, storage=SimpleNamespace(outbox=store), bus=NoListeners())


class NoListeners:
    def __len__(self) -> int:
        return 0


async def test_batches_sharing_a_receiver_are_delivered_in_their_order() -> None:
    """A request that timed out on the sender may still be running here when its retry (the
    same entries and later ones) arrives: the retry must not deliver the later ones first."""
    store, delivered = SlowStore(), list[tuple[str, str]]()
    messaging = fake_messaging(store, delivered)
    inbox = Inbox(
        "b",
        messaging,
        locate=lambda name: None,
        owner=lambda name: "b",
        clients=RemoteClients(),
        committed=lambda: None,
    )
    store.gates["m1"] = asyncio.Event()
    first = wire.encode_batch("a", [OutboxEntry(1, "m1", "b", "x", body("m1", "x"), 0, 0, 0)])
    retry = wire.encode_batch(
        "a",
        [
            OutboxEntry(1, "m1", "b", "x", body("m1", "x"), 0, 0, 0),
            OutboxEntry(2, "m2", "b", "x", body("m2", "x"), 0, 0, 0),
        ],
    )
    other = wire.encode_batch("a", [OutboxEntry(3, "m3", "b", "y", body("m3", "y"), 0, 0, 0)])
    slow = asyncio.ensure_future(inbox.receive(first))
    later = asyncio.ensure_future(inbox.receive(retry))
    # a batch for another receiver is not held up by them
    assert wire.decode_acks(await asyncio.wait_for(inbox.receive(other), 2)) == [3]
    assert delivered == [("y", "m3")]
    store.gates["m1"].set()
    assert wire.decode_acks(await asyncio.wait_for(slow, 2)) == [1]
    assert wire.decode_acks(await asyncio.wait_for(later, 2)) == [1, 2]
    assert delivered == [("y", "m3"), ("x", "m1"), ("x", "m2")]
    assert inbox.duplicates == 1
    assert not inbox._busy


class Receiver:
    """A node that commits in order, drops duplicates and answers when told."""

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
        policy = RetryPolicy(max_in_flight=3)
        forwarder = Forwarder(
            storage.outbox, remote.send, policy=policy, clock=clock, acks_behind=True
        )
        rows = [(f"m{i}", "n1", "abc"[i % 3], b"x") for i in range(30)]
        await storage.outbox.enqueue(rows, now=clock.wall())
        for _ in range(40):
            await forwarder.pump()
            for _, task in forwarder.requests_in_flight:
                await task
            if not await storage.outbox.due(clock.wall(), 100):
                break
        await forwarder.settled()
        assert await storage.outbox.depth() == 0
        assert sorted(remote.sent) == sorted(set(remote.sent))  # none sent twice
        assert remote.committed == [f"m{i}" for i in range(30)]
        assert forwarder.statistics().acked == 30
        await forwarder.aclose()
