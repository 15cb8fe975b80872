"""Sending the outbox to other nodes: the retry policy and the pump that applies it.

Cross-node delivery is at least once: a message for an agent on another
node waits in the sender's SQLite outbox (`caxton.storage.outbox`) until the owning node has
committed it and acknowledged; the receiver drops duplicates. This module decides what to send
and when, and knows nothing of the network: the transport is an injected ``send(node, entries)``
that returns the ``seq`` of every entry the node acknowledged (so tests drive it with a fake,
and the cluster's NATS connection plugs in a request to the node's inbox).

The rules (`RetryPolicy`, pure and clock-driven):

* **Per-node backoff.** A send that fails, or leaves entries unacknowledged, puts its node in
  backoff: ``min(cap, base * 2**(failures-1))``, shortened by a random jitter of up to
  ``jitter`` of it (never longer than the cap). A full acknowledgement resets the node. A node
  in backoff, or with ``max_in_flight`` requests in flight (1 unless configured), is skipped;
  the others are sent to as usual.
* **Head of line per receiver.** An entry is sent only when every earlier entry for the same
  receiver is acknowledged, or is ahead of it in the same request (the receiver commits a
  request's entries in order and acknowledges a prefix of each receiver's). A receiver whose
  entry waits blocks only that receiver.

It lives in ``cluster`` (not ``messaging``) because it is about other nodes: messaging stays
node-local and hands remote messages over through ``Router.forward``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from caxton.storage.outbox import OutboxEntry

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "BACKOFF_JITTER",
    "MAX_IN_FLIGHT",
    "MAX_REQUEST_ENTRIES",
    "Backoff",
    "Outcome",
    "RetryPolicy",
]

#: The first retry delay after a failure, in seconds.
BACKOFF_BASE = 0.1
#: No retry delay is longer than this, in seconds.
BACKOFF_CAP = 10.0
#: A delay is shortened by a random fraction of it, up to this (0: no jitter).
BACKOFF_JITTER = 0.5
#: The most entries one request to a node carries.
MAX_REQUEST_ENTRIES = 512
#: The most requests in flight to one node at a time, by default.
MAX_IN_FLIGHT = 1


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with a cap and a bounded jitter."""

    base: float = BACKOFF_BASE
    cap: float = BACKOFF_CAP
    jitter: float = BACKOFF_JITTER

    def __post_init__(self) -> None:
        if not (0 < self.base <= self.cap) or not (0 <= self.jitter < 1):
            raise ValueError(f"invalid backoff {self!r}: need 0 < base <= cap, 0 <= jitter < 1")

    def delay(self, failures: int, draw: float) -> float:
        """The delay after ``failures`` (>= 1) consecutive failures; ``draw`` is in [0, 1)."""
        exponent = min(failures - 1, 62)  # 2**62 * base is past any cap
        full = min(self.cap, self.base * 2.0**exponent)
        return full * (1.0 - self.jitter * draw)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to write back after one request: entries to delete, and entries to retry."""

    node: str
    acked: tuple[int, ...]
    #: Unacknowledged entries with their new attempt count.
    retry: tuple[tuple[int, int], ...]
    #: When the retried entries are next due (unix seconds), or None if nothing is retried.
    next_at: float | None


@dataclass(slots=True)
class _Node:
    failures: int = 0
    blocked_until: float = 0.0
    last_delay: float = 0.0


@dataclass(slots=True)
class RetryPolicy:
    """Which due entries to send now, and the backoff after each request (module docstring).

    Pure: no I/O, no clock of its own (every call takes ``now``), randomness from ``draw``.
    """

    backoff: Backoff = field(default_factory=Backoff)
    max_request: int = MAX_REQUEST_ENTRIES
    draw: Callable[[], float] = random.random
    max_in_flight: int = MAX_IN_FLIGHT
    _nodes: dict[str, _Node] = field(default_factory=dict)
    _busy_nodes: dict[str, int] = field(default_factory=dict)
    _busy_receivers: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_request < 1 or self.max_in_flight < 1:
            raise ValueError(f"invalid retry policy {self!r}: need max_request, max_in_flight >= 1")

    def plan(self, due: Sequence[OutboxEntry], now: float) -> dict[str, list[OutboxEntry]]:
        """The requests to start now: target node -> entries, from ``due`` in ``seq`` order.

        The planned nodes and receivers count as in flight until `release`.
        """
        requests: dict[str, list[OutboxEntry]] = {}
        stopped: set[str] = set()  # receivers with an earlier entry not sent now
        planned: dict[str, str] = {}  # receiver -> the node its entries go to in this plan
        for entry in due:
            receiver, node = entry.receiver, entry.node
            if receiver in stopped:
                continue
            batch = requests.get(node)
            if (
                receiver in self._busy_receivers
                or planned.setdefault(receiver, node) != node  # moved: one request at a time
                or (batch is None and not self.ready(node, now))
                or (batch is not None and len(batch) >= self.max_request)
            ):
                stopped.add(receiver)
                continue
            if batch is None:
                batch = requests[node] = []
            batch.append(entry)
        for node, batch in requests.items():
            self._busy_nodes[node] = self._busy_nodes.get(node, 0) + 1
            for entry in batch:
                self._busy_receivers[entry.receiver] = (
                    self._busy_receivers.get(entry.receiver, 0) + 1
                )
        return requests

    def ready(self, node: str, now: float) -> bool:
        """Whether a request to ``node`` may start now (fewer than ``max_in_flight`` in
        flight, not backing off)."""
        if self._busy_nodes.get(node, 0) >= self.max_in_flight:
            return False
        state = self._nodes.get(node)
        return state is None or state.blocked_until <= now

    def backing_off(self, node: str, now: float) -> bool:
        """Whether ``node`` is in backoff after a failure (not merely busy)."""
        state = self._nodes.get(node)
        return state is not None and state.blocked_until > now

    def outcome(
        self, node: str, sent: Sequence[OutboxEntry], acked: Collection[int], now: float
    ) -> Outcome:
        """Account for one finished request (``acked``: empty if it failed) and say what to
        write back. A request with unacknowledged entries is a failure of its node."""
        acknowledged = tuple(e.seq for e in sent if e.seq in acked)
        missing = [e for e in sent if e.seq not in acked]
        state = self._nodes.setdefault(node, _Node())
        if not missing:
            state.failures, state.blocked_until, state.last_delay = 0, 0.0, 0.0
            return Outcome(node, acknowledged, (), None)
        state.failures += 1
        state.last_delay = self.backoff.delay(state.failures, self.draw())
        state.blocked_until = now + state.last_delay
        retry = tuple((e.seq, e.attempts + 1) for e in missing)
        return Outcome(node, acknowledged, retry, state.blocked_until)

    def release(self, node: str, sent: Sequence[OutboxEntry]) -> None:
        """The request's outcome is written: its node and receivers are free again."""
        left = self._busy_nodes.get(node, 0) - 1
        if left > 0:
            self._busy_nodes[node] = left
        else:
            self._busy_nodes.pop(node, None)
        for entry in sent:
            left = self._busy_receivers.get(entry.receiver, 0) - 1
            if left > 0:
                self._busy_receivers[entry.receiver] = left
            else:
                self._busy_receivers.pop(entry.receiver, None)

    def busy(self, receiver: str) -> bool:
        """Whether an entry for ``receiver`` is in flight."""
        return receiver in self._busy_receivers

    def failures(self, node: str) -> int:
        """Consecutive failed requests to ``node``."""
        state = self._nodes.get(node)
        return 0 if state is None else state.failures

    def last_delay(self, node: str) -> float:
        """The backoff delay given to ``node`` after its last failure (0 after a success)."""
        state = self._nodes.get(node)
        return 0.0 if state is None else state.last_delay

    def next_wakeup(self, now: float) -> float | None:
        """When the earliest node in backoff may be sent to again (None: none is waiting)."""
        times = [s.blocked_until for s in self._nodes.values() if s.blocked_until > now]
        return min(times, default=None)

    def forget(self, node: str) -> None:
        """Drop what is known of ``node`` (it was removed from the cluster)."""
        self._nodes.pop(node, None)
