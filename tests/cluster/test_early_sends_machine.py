"""A hypothesis state machine for agents' messages sent to other nodes before their outbox rows
commit (`Speculation`), on a real SQLite store with a ManualClock and a fake transport.

The machine plays the journal: workers record messages (the forwarder's ``incoming``), and the
journal's writes commit them later, in order, a few at a time, and offer the rows. Requests
are answered (acknowledged whole or in part, failed, reply lost, or delivered with the commit
announced later by a notice that may be lost) in any order with the commits, while receivers
move between nodes and time passes.

Checked throughout: a receiver never gets its messages out of order; an entry sent as ``fresh``
is never one the receiver already has (the receiver delivers those without its duplicate
check); no receiver has two requests in flight; the store adds up (deleted + waiting =
written). At the end, with the network healed, every message reached its receiver exactly
once, in order, and the outbox is empty.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from caxton.clock import ManualClock
from caxton.cluster.forwarder import COMMIT_TIMEOUT, Acked, Forwarder
from caxton.cluster.outbox import Backoff, RetryPolicy
from caxton.cluster.speculation import Speculation
from caxton.storage import Storage
from caxton.storage.outbox import OutboxEntry

T = TypeVar("T")

RECEIVERS = ("a", "b", "c")
NODES = ("n1", "n2")
CAP = 4.0


def body(mid: int) -> bytes:
    return b'{"message_id":"%d","performative":"inform"}' % mid


class EarlySendsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="caxton-early-"))
        self.loop = asyncio.new_event_loop()
        self.storage = Storage.open_sync(self.dir / "local.db", readers=1)
        self.clock = ManualClock(wall=1000.0)
        self.policy = RetryPolicy(
            backoff=Backoff(base=0.5, cap=CAP, jitter=0.5),
            max_request=3,
            draw=random.Random(7).random,
        )
        self.forwarder = Forwarder(
            self.storage.outbox,
            self.send,
            policy=self.policy,
            clock=self.clock,
            acks_behind=True,
            # the machine's time jumps while writes wait; a real journal write takes
            # milliseconds (forgetting keys is tested on its own)
            speculation=Speculation(forget_after=1e9),
        )
        self.run(self.forwarder._load(self.clock.wall()))  # as `run` does first: complete
        self.home = dict.fromkeys(RECEIVERS, "n1")
        self.recorded: dict[str, list[int]] = {r: [] for r in RECEIVERS}
        self.unwritten: list[tuple[str, str, str, bytes]] = []
        self.total = 0
        self.written = 0
        self.pending: dict[str, tuple[Sequence[OutboxEntry], asyncio.Future[Acked]]] = {}
        #: Notices the receiving nodes owe: (node, seqs delivered and committed).
        self.notices: list[tuple[str, list[int]]] = []
        self.seen: set[str] = set()
        self.committed: dict[str, list[int]] = {r: [] for r in RECEIVERS}

    def run(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)

    async def send(self, node: str, entries: Sequence[OutboxEntry]) -> Acked:
        future: asyncio.Future[Acked] = self.loop.create_future()
        self.pending[node] = (entries, future)
        return await future

    def commit(self, entries: Sequence[OutboxEntry]) -> None:
        """The receiving node commits entries in order, dropping ids it has seen."""
        for e in entries:
            if e.message_id in self.seen:
                assert not e.fresh, f"message {e.message_id} sent as fresh a second time"
                continue
            self.seen.add(e.message_id)
            self.committed[e.receiver].append(int(e.message_id))

    def settle(self) -> None:
        for _ in range(5):
            self.run(asyncio.sleep(0))

    @rule(receiver=st.sampled_from(RECEIVERS), count=st.integers(1, 4), early=st.booleans())
    def record(self, receiver: str, count: int, early: bool) -> None:
        """An agent sends: recorded for an early send and for the journal's next write (or,
        not ``early``, only written: an API submit, a timer, a `failure` reply)."""
        for _ in range(count):
            node = self.home[receiver]
            data = body(self.total)
            if early:
                self.forwarder.speculation.incoming.append((data, receiver, node))
            else:  # written on the loop: announced before its write
                row = (str(self.total), node, receiver, data)
                self.forwarder.speculation.expect([row], self.clock.wall())
            self.unwritten.append((str(self.total), node, receiver, data))
            self.recorded[receiver].append(self.total)
            self.total += 1

    @precondition(lambda self: bool(self.unwritten))
    @rule(count=st.integers(1, 6))
    def write(self, count: int) -> None:
        """The journal commits the oldest recorded messages and offers their rows."""
        rows, self.unwritten = self.unwritten[:count], self.unwritten[count:]
        added = self.run(self.storage.outbox.enqueue(rows, now=self.clock.wall()))
        self.written += len(rows)

        async def offer() -> None:  # on the loop, as the journal's commit callback does
            self.forwarder.offer(added)

        self.run(offer())
        self.settle()

    @rule(receiver=st.sampled_from(RECEIVERS), node=st.sampled_from(NODES))
    def move(self, receiver: str, node: str) -> None:
        self.home[receiver] = node

    @rule()
    def pump(self) -> None:
        self.run(self.forwarder.pump())
        self.settle()

    @precondition(lambda self: bool(self.pending))
    @rule(
        data=st.data(),
        mode=st.sampled_from(["ack", "ack", "fail", "lost_reply", "delivered", "delivered"]),
        committed=st.integers(0, 3),
    )
    def respond(self, data: st.DataObject, mode: str, committed: int) -> None:
        node = data.draw(st.sampled_from(sorted(self.pending)))
        entries, future = self.pending.pop(node)
        task = self.forwarder.in_flight[node]
        if mode == "fail":
            future.set_exception(ConnectionError("unreachable"))
        else:
            prefix = entries[:committed] if mode != "ack" or committed < 3 else entries
            self.commit(prefix)
            if mode == "ack":
                future.set_result(Acked({e.seq for e in prefix}))
            elif mode == "delivered":  # answered at once; the commit is announced later
                seqs = [e.seq for e in prefix]
                future.set_result(Acked((), seqs))
                self.notices.append((node, seqs))
            else:
                future.set_exception(TimeoutError("the reply was lost"))
        self.run(task)
        self.settle()

    @precondition(lambda self: bool(self.notices))
    @rule(data=st.data(), lost=st.booleans())
    def notice(self, data: st.DataObject, lost: bool) -> None:
        """A receiving node's commit notice arrives (or is lost: the entries are sent again
        after the commit timeout, and the receiver drops them as duplicates)."""
        index = data.draw(st.integers(0, len(self.notices) - 1))
        node, seqs = self.notices.pop(index)
        if not lost:

            async def heard() -> None:
                self.forwarder.committed_at(node, seqs)

            self.run(heard())
            self.settle()

    @rule()
    def notice_from_the_wrong_node(self) -> None:
        """A notice only settles what that node answered as pending."""
        if self.notices:
            node, seqs = self.notices[0]
            other = next(n for n in NODES if n != node)

            async def heard() -> None:
                self.forwarder.committed_at(other, seqs)

            self.run(heard())
            self.settle()

    @rule(seconds=st.sampled_from([0.5, 2.0, COMMIT_TIMEOUT + 0.1]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def order_per_receiver_holds(self) -> None:
        for receiver, got in self.committed.items():
            assert got == self.recorded[receiver][: len(got)], (receiver, got)

    @invariant()
    def no_receiver_has_two_requests_in_flight(self) -> None:
        nodes_of = {(e.receiver, n) for n, (es, _) in self.pending.items() for e in es}
        assert len({r for r, _ in nodes_of}) == len(nodes_of), nodes_of

    @invariant()
    def the_store_adds_up(self) -> None:
        self.run(self.forwarder.settled())
        depth = self.run(self.storage.outbox.depth())
        assert self.forwarder.statistics().acked + depth == self.written

    def teardown(self) -> None:
        try:
            self.drain()
        finally:
            self.run(self.forwarder.aclose())
            self.storage.close()
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def drain(self) -> None:
        """Everything is written and the network heals: each message arrives once, in order."""
        if self.unwritten:
            self.write(len(self.unwritten))
        for _ in range(10 * self.total + 10):
            for node, seqs in self.notices:

                async def heard(node: str = node, seqs: list[int] = seqs) -> None:
                    self.forwarder.committed_at(node, seqs)

                self.run(heard())
            self.notices.clear()
            for node in list(self.pending):
                entries, future = self.pending.pop(node)
                self.commit(entries)
                future.set_result(Acked({e.seq for e in entries}))
                self.run(self.forwarder.in_flight[node])
            self.run(self.forwarder.settled())
            if not self.pending and self.run(self.storage.outbox.depth()) == 0:
                break
            self.clock.advance(CAP)
            self.pump()
        assert self.committed == self.recorded
        assert self.forwarder.statistics().acked == self.total
        assert self.run(self.storage.outbox.depth()) == 0


EarlySendsMachine.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEarlySends = EarlySendsMachine.TestCase
