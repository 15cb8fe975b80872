"""The sender's side of commit notices: an owner that answers a batch as delivered (pending)
frees its receivers at once; the rows stay in the outbox until that owner's notice, and are
sent again (not as first sends) when no notice comes in time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from caxton.clock import ManualClock
from caxton.cluster.forwarder import RELOAD_INTERVAL, Acked, Forwarder
from caxton.storage import Storage
from caxton.storage.outbox import OutboxEntry


class Owner:
    """A transport whose requests the test answers."""

    def __init__(self) -> None:
        self.requests: list[tuple[list[OutboxEntry], asyncio.Future[Acked]]] = []

    async def send(self, node: str, entries: Sequence[OutboxEntry]) -> Acked:
        future: asyncio.Future[Acked] = asyncio.get_running_loop().create_future()
        self.requests.append((list(entries), future))
        return await future

    async def answer(self, index: int, acked: Acked) -> None:
        self.requests[index][1].set_result(acked)
        for _ in range(5):
            await asyncio.sleep(0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Storage]:
    storage = await Storage.open(tmp_path / "local.db")
    yield storage
    await storage.aclose()


async def enqueue(store: Storage, forwarder: Forwarder, mid: str, receiver: str) -> int:
    rows = await store.outbox.enqueue([(mid, "b", receiver, b"{}")], now=1000.0)
    forwarder.offer(rows)
    return rows[0].seq


async def test_a_pending_answer_frees_the_receiver_and_the_notice_deletes(store: Storage) -> None:
    clock, owner = ManualClock(wall=1000.0), Owner()
    forwarder = Forwarder(store.outbox, owner.send, clock=clock, acks_behind=True)
    await forwarder._load(clock.wall())
    first = await enqueue(store, forwarder, "m1", "r")
    await forwarder.pump()
    await asyncio.sleep(0)
    await owner.answer(0, Acked((), [first]))
    second = await enqueue(store, forwarder, "m2", "r")
    assert await forwarder.pump() == 1  # r is free: m2 goes before m1's notice
    await asyncio.sleep(0)
    assert [e.message_id for e in owner.requests[1][0]] == ["m2"]
    await owner.answer(1, Acked([second]))
    await forwarder.settled()
    assert await store.outbox.depth() == 1  # m1 waits for its notice

    forwarder.committed_at("c", [first])  # another node cannot settle b's entries
    await forwarder.settled()
    assert await store.outbox.depth() == 1
    forwarder.committed_at("b", [first])
    await forwarder.settled()
    assert await store.outbox.depth() == 0
    assert forwarder.statistics().acked == 2
    await forwarder.aclose()


async def test_without_a_notice_the_entries_are_sent_again_not_as_first_sends(
    store: Storage,
) -> None:
    clock, owner = ManualClock(wall=1000.0), Owner()
    timeout = RELOAD_INTERVAL / 4  # the entry comes back from memory, not from a reload
    forwarder = Forwarder(
        store.outbox, owner.send, clock=clock, acks_behind=True, commit_timeout=timeout
    )
    await forwarder._load(clock.wall())
    seq = await enqueue(store, forwarder, "m1", "r")
    await forwarder.pump()
    await asyncio.sleep(0)
    assert owner.requests[0][0][0].fresh
    await owner.answer(0, Acked((), [seq]))
    clock.advance(timeout / 2)
    assert await forwarder.pump() == 0  # still waiting for the notice
    clock.advance(timeout / 2 + 0.1)
    assert await forwarder.pump() == 1
    await asyncio.sleep(0)
    again = owner.requests[1][0]
    assert [(e.message_id, e.fresh) for e in again] == [("m1", False)]
    await owner.answer(1, Acked([seq]))
    await forwarder.settled()
    assert await store.outbox.depth() == 0
    assert forwarder.statistics().retried == 1
    forwarder.committed_at("b", [seq])  # a late notice changes nothing
    await forwarder.aclose()
