"""The outbox state machine again, with several requests in flight per node and the
acknowledgements deleted behind (as `ClusterMessages` may run the forwarder): the same checks
hold (order per receiver, no receiver in two requests at once, nothing acknowledged twice or
lost, everything committed exactly once in order at the end)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from caxton.cluster.forwarder import Forwarder
from caxton.storage.outbox import OutboxEntry

from .test_outbox_machine import OutboxMachine

IN_FLIGHT = 2  # fewer than the receivers, so that the limit matters


class InFlightMachine(OutboxMachine):
    def __init__(self) -> None:
        super().__init__()
        self.policy.max_in_flight = IN_FLIGHT
        self.forwarder = Forwarder(
            self.storage.outbox,
            self.send,
            policy=self.policy,
            clock=self.clock,
            acks_behind=True,
        )
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.requests = 0

    async def send(self, node: str, entries: Sequence[OutboxEntry]) -> Collection[int]:
        future: asyncio.Future[Collection[int]] = self.loop.create_future()
        key = f"{node}#{self.requests}"  # one key per request (several per node)
        self.requests += 1
        self.pending[key] = (entries, future)
        task = asyncio.current_task()
        assert task is not None
        self.tasks[key] = task
        return await future

    @precondition(lambda self: bool(self.pending))
    @rule(
        data=st.data(),
        mode=st.sampled_from(["ack", "fail", "lost_reply"]),
        committed=st.integers(0, 3),
    )
    def respond(self, data: st.DataObject, mode: str, committed: int) -> None:
        key = data.draw(st.sampled_from(sorted(self.pending)))
        entries, future = self.pending.pop(key)
        task = self.tasks.pop(key)
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

    @rule(node=st.sampled_from(("n1", "n2")), rounds=st.integers(1, 6))
    def outage(self, node: str, rounds: int) -> None:
        for _ in range(rounds):
            for key in [k for k in self.pending if k.startswith(node + "#")]:
                _, future = self.pending.pop(key)
                future.set_exception(ConnectionError("unreachable"))
                self.run(self.tasks.pop(key))
            self.clock.advance(4.0)
            self.pump()

    @invariant()
    def at_most_in_flight_per_node(self) -> None:
        for node in ("n1", "n2"):
            assert sum(k.startswith(node + "#") for k in self.pending) <= IN_FLIGHT

    @invariant()
    def the_store_view_adds_up(self) -> None:
        self.run(self.forwarder.settled())
        depth = self.run(self.storage.outbox.depth())
        assert self.forwarder.statistics().acked + depth == self.total

    def drain(self) -> None:
        for _ in range(10 * self.total + 10):
            for key in list(self.pending):
                entries, future = self.pending.pop(key)
                self.commit(entries)
                future.set_result({e.seq for e in entries})
                self.run(self.tasks.pop(key))
            self.run(self.forwarder.settled())
            if not self.pending and self.run(self.storage.outbox.depth()) == 0:
                break
            self.clock.advance(4.0)
            self.pump()
        assert self.committed == self.enqueued
        assert self.forwarder.statistics().acked == self.total
        assert self.run(self.storage.outbox.depth()) == 0


InFlightMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestOutboxInFlight = InFlightMachine.TestCase
