"""A hypothesis state machine for the outbox: random enqueues, acknowledgements (whole, partial,
lost replies), failures, receivers moving between nodes and time advancing, on a real SQLite
store with a ManualClock and a fake transport whose replies the machine decides.

Checked throughout: a receiver never gets its messages out of order, no receiver has two
requests in flight, no backoff exceeds the cap, and the store's view adds up (acknowledged +
waiting = enqueued: nothing acknowledged twice, nothing lost). At the end, with the network
healed and time moving, every message is committed exactly once in order and the outbox is
empty.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
from collections.abc import Awaitable, Collection, Sequence
from pathlib import Path
from typing import TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from caxton.clock import ManualClock
from caxton.cluster.forwarder import Forwarder
from caxton.cluster.outbox import Backoff, RetryPolicy
from caxton.storage import Storage
from caxton.storage.outbox import OutboxEntry

T = TypeVar("T")

RECEIVERS = ("a", "b", "c")
NODES = ("n1", "n2")
CAP = 4.0


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="caxton-outbox-"))
        self.loop = asyncio.new_event_loop()
        self.storage = Storage.open_sync(self.dir / "local.db", readers=1)
        self.clock = ManualClock(wall=1000.0)
        self.policy = RetryPolicy(
            backoff=Backoff(base=0.5, cap=CAP, jitter=0.5),
            max_request=3,
            draw=random.Random(7).random,
        )
        self.forwarder = Forwarder(
            self.storage.outbox, self.send, policy=self.policy, clock=self.clock
        )
        self.home = dict.fromkeys(RECEIVERS, "n1")
        self.enqueued: dict[str, list[int]] = {r: [] for r in RECEIVERS}
        self.total = 0
        self.pending: dict[str, tuple[Sequence[OutboxEntry], asyncio.Future[Collection[int]]]] = {}
        self.seen: set[str] = set()
        self.committed: dict[str, list[int]] = {r: [] for r in RECEIVERS}

    def run(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)

    async def send(self, node: str, entries: Sequence[OutboxEntry]) -> Collection[int]:
        future: asyncio.Future[Collection[int]] = self.loop.create_future()
        self.pending[node] = (entries, future)
        return await future

    def commit(self, entries: Sequence[OutboxEntry]) -> None:
        """The receiving node commits entries in order, dropping ids it has seen (never one
        the sender marked ``fresh``)."""
        for e in entries:
            if e.message_id in self.seen:
                # the receiver delivers ``fresh`` entries without its duplicate check
                assert not e.fresh, f"message {e.message_id} sent as fresh a second time"
                continue
            self.seen.add(e.message_id)
            self.committed[e.receiver].append(int(e.message_id))

    def settle(self) -> None:
        for _ in range(5):
            self.run(asyncio.sleep(0))

    @rule(receiver=st.sampled_from(RECEIVERS), count=st.integers(1, 4))
    def enqueue(self, receiver: str, count: int) -> None:
        rows = []
        for _ in range(count):
            rows.append((str(self.total), self.home[receiver], receiver, b"x"))
            self.enqueued[receiver].append(self.total)
            self.total += 1
        added = self.run(self.storage.outbox.enqueue(rows, now=self.clock.wall()))
        self.forwarder.offer(added)  # as every committed write does (the forwarder's view)

    @rule(receiver=st.sampled_from(RECEIVERS), node=st.sampled_from(NODES))
    def move(self, receiver: str, node: str) -> None:
        """The receiver now lives elsewhere (its new messages go there)."""
        self.home[receiver] = node

    @rule()
    def pump(self) -> None:
        self.run(self.forwarder.pump())
        self.settle()

    @precondition(lambda self: bool(self.pending))
    @rule(
        data=st.data(),
        mode=st.sampled_from(["ack", "fail", "lost_reply"]),
        committed=st.integers(0, 3),
    )
    def respond(self, data: st.DataObject, mode: str, committed: int) -> None:
        node = data.draw(st.sampled_from(sorted(self.pending)))
        entries, future = self.pending.pop(node)
        task = self.forwarder.in_flight[node]
        if mode == "fail":
            future.set_exception(ConnectionError("unreachable"))
        else:
            prefix = entries[:committed]
            self.commit(prefix)
            if mode == "ack":
                future.set_result({e.seq for e in prefix})
            else:
                future.set_exception(TimeoutError("the reply was lost"))
        self.run(task)

    @rule(node=st.sampled_from(NODES), rounds=st.integers(1, 6))
    def outage(self, node: str, rounds: int) -> None:
        """``node`` is unreachable for a few rounds (each after its backoff)."""
        for _ in range(rounds):
            if node in self.pending:
                _, future = self.pending.pop(node)
                task = self.forwarder.in_flight[node]
                future.set_exception(ConnectionError("unreachable"))
                self.run(task)
            self.clock.advance(CAP)
            self.pump()

    @rule(seconds=st.floats(0.0, 5.0))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def order_per_receiver_holds(self) -> None:
        for receiver, got in self.committed.items():
            assert got == sorted(got), (receiver, got)
            assert got == self.enqueued[receiver][: len(got)], (receiver, got)

    @invariant()
    def no_receiver_has_two_requests_in_flight(self) -> None:
        receivers = [e.receiver for entries, _ in self.pending.values() for e in entries]
        nodes_of = {(e.receiver, n) for n, (es, _) in self.pending.items() for e in es}
        assert len({r for r, _ in nodes_of}) == len(nodes_of), receivers

    @invariant()
    def backoff_never_exceeds_the_cap(self) -> None:
        for node in NODES:
            assert 0.0 <= self.policy.last_delay(node) <= CAP

    @invariant()
    def the_store_view_adds_up(self) -> None:
        depth = self.run(self.storage.outbox.depth())
        assert self.forwarder.statistics().acked + depth == self.total

    def teardown(self) -> None:
        try:
            self.drain()
        finally:
            self.run(self.forwarder.aclose())
            self.storage.close()
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def drain(self) -> None:
        """The network heals: everything is delivered, once, in order, and acknowledged."""
        for _ in range(10 * self.total + 10):
            for node in list(self.pending):
                entries, future = self.pending.pop(node)
                self.commit(entries)
                future.set_result({e.seq for e in entries})
                self.run(self.forwarder.in_flight[node])
            if not self.pending and self.run(self.storage.outbox.depth()) == 0:
                break
            self.clock.advance(CAP)
            self.pump()
        self.run(self.forwarder.settled())  # deletes behind: counted once they resume
        assert self.committed == self.enqueued
        assert self.forwarder.statistics().acked == self.total
        assert self.run(self.storage.outbox.depth()) == 0


OutboxMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestOutbox = OutboxMachine.TestCase
