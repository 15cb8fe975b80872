"""The outbox state machine again, with agents' messages sent before their outbox rows commit
(`Speculation`), on a real SQLite store with a ManualClock and a fake transport.

Here the machine plays the journal: messages are recorded (for an early send, or announced
with `Speculation.expect` as the loop's writes are) and the journal's writes commit them
later, in order, a few at a time, and offer the rows; requests are answered in any order with
those commits. The base machine's checks hold (order per receiver, no receiver in two requests
at once, no entry sent as ``fresh`` twice, everything committed exactly once in order at the
end), and the store adds up against what was written.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from caxton.cluster.forwarder import Forwarder
from caxton.cluster.speculation import Speculation

from .test_outbox_machine import RECEIVERS, OutboxMachine


def body(mid: int) -> bytes:
    return b'{"message_id":"%d","performative":"inform"}' % mid


class EarlySendsMachine(OutboxMachine):
    def __init__(self) -> None:
        super().__init__()
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
        self.unwritten: list[tuple[str, str, str, bytes]] = []
        self.written = 0

    @rule(receiver=st.sampled_from(RECEIVERS), count=st.integers(1, 4), early=st.booleans())
    def enqueue(self, receiver: str, count: int, early: bool = True) -> None:
        """An agent sends: recorded for an early send and for the journal's next write (or,
        not ``early``, only written: an API submit, a timer, a `failure` reply)."""
        for _ in range(count):
            node = self.home[receiver]
            row = (str(self.total), node, receiver, body(self.total))
            if early:
                self.forwarder.speculation.incoming.append((row[3], receiver, node))
            else:  # written on the loop: announced before its write
                self.forwarder.speculation.expect([row], self.clock.wall())
            self.unwritten.append(row)
            self.enqueued[receiver].append(self.total)
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

    @invariant()
    def the_store_view_adds_up(self) -> None:
        """Deleted + waiting = written (what is recorded but not written is in no table)."""
        self.run(self.forwarder.settled())
        depth = self.run(self.storage.outbox.depth())
        assert self.forwarder.statistics().acked + depth == self.written

    def drain(self) -> None:
        """Everything is written, then the base machine's heal: each message arrives once."""
        if self.unwritten:
            self.write(len(self.unwritten))
        super().drain()


EarlySendsMachine.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEarlySends = EarlySendsMachine.TestCase
