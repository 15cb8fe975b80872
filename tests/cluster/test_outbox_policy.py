"""The outbox retry policy (cluster/outbox.py) and the forwarder that applies it, with a fake
transport, a ManualClock and a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from pathlib import Path

import pytest

from caxton.clock import ManualClock
from caxton.cluster.forwarder import Forwarder
from caxton.cluster.outbox import Backoff, RetryPolicy
from caxton.storage import Storage
from caxton.storage.outbox import OutboxEntry


def entry(seq: int, receiver: str, node: str = "n1", attempts: int = 0) -> OutboxEntry:
    return OutboxEntry(seq, f"m{seq}", node, receiver, b"", 0.0, attempts, 0.0)


def test_backoff_doubles_up_to_the_cap_and_jitter_only_shortens() -> None:
    backoff = Backoff(base=0.1, cap=1.0, jitter=0.5)
    assert [backoff.delay(n, 0.0) for n in (1, 2, 3, 4, 5, 100)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.delay(1, 0.999) == pytest.approx(0.05, rel=0.01)
    assert backoff.delay(10_000, 0.5) == 0.75
    with pytest.raises(ValueError, match="invalid backoff"):
        Backoff(base=2.0, cap=1.0)
    with pytest.raises(ValueError, match="invalid backoff"):
        Backoff(jitter=1.0)


def test_a_failing_node_backs_off_without_blocking_other_nodes() -> None:
    policy = RetryPolicy(backoff=Backoff(base=1.0, cap=8.0, jitter=0.0))
    due = [entry(1, "a", "n1"), entry(2, "b", "n2")]
    plan = policy.plan(due, now=0.0)
    assert {n: [e.seq for e in es] for n, es in plan.items()} == {"n1": [1], "n2": [2]}
    assert policy.plan(due, now=0.0) == {}  # both in flight
    failed = policy.outcome("n1", plan["n1"], (), now=0.0)
    assert failed.retry == ((1, 1),)
    assert failed.next_at == 1.0
    policy.release("n1", plan["n1"])
    ok = policy.outcome("n2", plan["n2"], {2}, now=0.0)
    assert ok.acked == (2,)
    assert ok.retry == ()
    policy.release("n2", plan["n2"])
    later = [entry(1, "a", "n1", 1), entry(3, "c", "n2")]
    assert list(policy.plan(later, now=0.5)) == ["n2"]  # n1 backs off, n2 goes on
    assert policy.next_wakeup(0.5) == 1.0
    for attempt, expected in ((2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0)):
        policy._busy_nodes.clear()
        assert policy.outcome("n1", [entry(1, "a")], (), now=0.0).next_at == expected, attempt
    assert policy.failures("n1") == 5


def test_later_entries_of_a_receiver_wait_for_its_earlier_ones() -> None:
    policy = RetryPolicy(max_request=2)
    plan = policy.plan([entry(1, "a"), entry(2, "a"), entry(3, "a"), entry(4, "b")], now=0.0)
    # the request is full after 1 and 2: 3 waits, and so would every later entry of "a"
    assert [e.seq for e in plan["n1"]] == [1, 2]
    policy.release("n1", plan["n1"])
    policy.outcome("n1", plan["n1"], {1, 2}, now=0.0)
    second = policy.plan([entry(5, "a", "n2"), entry(6, "b", "n2")], now=0.0)
    assert [e.seq for e in second["n2"]] == [5, 6]
    # now "a" has a request in flight (to n2): its next entry waits, "c"'s does not
    busy = policy.plan([entry(7, "a", "n3"), entry(8, "c", "n3")], now=0.0)
    assert [e.seq for e in busy["n3"]] == [8]


def test_a_receiver_that_moved_node_is_sent_to_one_node_at_a_time() -> None:
    policy = RetryPolicy()
    plan = policy.plan([entry(1, "a", "old"), entry(2, "a", "new"), entry(3, "b", "new")], 0.0)
    assert {n: [e.seq for e in es] for n, es in plan.items()} == {"old": [1], "new": [3]}


class FakeNode:
    """A node's receiving side: commits each request's entries in order, dedups by id."""

    def __init__(self) -> None:
        self.committed: dict[str, list[int]] = {}
        self.seen: set[int] = set()
        self.fail = False

    async def send(self, node: str, entries: Sequence[OutboxEntry]) -> Collection[int]:
        await asyncio.sleep(0)
        if self.fail:
            raise ConnectionError(f"{node} is unreachable")
        for e in entries:
            if e.seq not in self.seen:
                self.seen.add(e.seq)
                self.committed.setdefault(e.receiver, []).append(e.seq)
        return {e.seq for e in entries}


async def test_the_forwarder_delivers_in_order_and_retries_after_the_backoff(
    tmp_path: Path,
) -> None:
    clock = ManualClock(wall=1000.0)
    remote = FakeNode()
    async with await Storage.open(tmp_path / "local.db") as storage:
        policy = RetryPolicy(backoff=Backoff(base=1.0, cap=4.0, jitter=0.0))
        forwarder = Forwarder(storage.outbox, remote.send, policy=policy, clock=clock)
        rows = [(f"m{i}", "n1", "ab"[i % 2], b"x") for i in range(10)]
        await storage.outbox.enqueue(rows, now=clock.wall())
        remote.fail = True
        assert await forwarder.pump() == 1
        await asyncio.gather(*forwarder.in_flight.values())
        assert await forwarder.pump() == 0  # backing off
        entries = await storage.outbox.entries()
        assert {e.attempts for e in entries} == {1}
        assert {e.next_attempt_at for e in entries} == {1001.0}
        remote.fail = False
        clock.advance(1.0)
        assert await forwarder.pump() == 1
        await asyncio.gather(*forwarder.in_flight.values())
        assert await storage.outbox.depth() == 0
        seqs = sorted(e.seq for e in entries)
        assert remote.committed == {"a": seqs[0::2], "b": seqs[1::2]}
        stats = forwarder.statistics()
        assert (stats.requests, stats.failed_requests, stats.acked, stats.retried) == (2, 1, 10, 10)


async def test_run_sends_what_is_enqueued_and_stops_on_aclose(tmp_path: Path) -> None:
    remote = FakeNode()
    async with await Storage.open(tmp_path / "local.db") as storage:
        forwarder = Forwarder(storage.outbox, remote.send)
        forwarder.start()
        async with asyncio.timeout(10):  # bounded: a hang fails the test instead
            forwarder.offer(await storage.outbox.enqueue([("m1", "n1", "a", b"x")]))
            for _ in range(200):
                if await storage.outbox.depth() == 0:
                    break
                await asyncio.sleep(0.01)
            await forwarder.aclose()
        assert await storage.outbox.depth() == 0
        assert len(remote.committed["a"]) == 1
