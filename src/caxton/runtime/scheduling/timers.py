"""Timers for the host's `schedule`: a heap of (due, receiver, message) serviced on the loop.

Workers hand new timers to the loop thread (batched with their other events); one task owned by
the runtime sleeps until the earliest due time and then routes the message as if it were sent
at that moment. Due times are on the monotonic clock, so a wall-clock jump (NTP, an operator's
``date``) neither delays nor hastens a timer. A `TimerBackend` can persist pending timers (the
SQLite one survives restarts). Each timer may have an ``owner`` (the runtime passes the `Agent`
that scheduled it, compared by identity: a later agent of the same name is another owner);
``released(owner)`` is called once the timer has fired, so the runtime can count each agent's
pending timers against ``agent_max_timers``, and `cancel` drops an owner's timers when the
agent is removed (they never fire: nothing reaches a later agent of the same name).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from time import time_ns
from typing import Any, Protocol

from caxton.clock import Clock
from caxton.runtime.delivery import Offer
from caxton.runtime.tracing import SpanLog
from caxton.wire.trace import HEAD

__all__ = ["MemoryTimers", "TimerBackend", "TimerQueue"]

#: Retry delay when a due message meets a full mailbox (seconds).
BACKPRESSURE_RETRY = 0.05


class TimerBackend(Protocol):
    """Persistence for pending timers (called on the loop thread; must not block)."""

    def add(self, timer_id: int, due: float, receiver: str, data: bytes) -> None: ...
    def remove(self, timer_id: int) -> None: ...

    def writable(self) -> bool:
        """False while timers are known not to be storable (the host's ``schedule`` then
        returns ERR_STORAGE); called from worker threads, so it must be cheap."""
        ...


class MemoryTimers:
    """A `TimerBackend` that keeps nothing beyond the process."""

    def add(self, timer_id: int, due: float, receiver: str, data: bytes) -> None:
        pass

    def remove(self, timer_id: int) -> None:
        pass

    def writable(self) -> bool:
        return True


_HEAD_LEN = len(HEAD)


class TimerQueue:
    """Pending scheduled messages, ordered by due time (loop thread only)."""

    def __init__(
        self,
        clock: Clock,
        route: Callable[[str, bytes], int],
        backend: TimerBackend,
        released: Callable[[Any], None] | None = None,
    ) -> None:
        self._clock = clock
        self._route = route
        self._backend = backend
        self._released = released
        self._heap: list[tuple[float, int, str, bytes, Any]] = []
        #: Timers dropped by `cancel` since start.
        self.cancelled = 0
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        #: With tracing on: a traced timer's firing is a ``caxton.timer`` step.
        self.spans: SpanLog | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, delay: float, receiver: str, data: bytes, owner: Any = None) -> None:
        """Deliver ``data`` to ``receiver`` after ``delay`` seconds."""
        due = self._clock.monotonic() + delay
        timer_id = next(self._ids)
        heapq.heappush(self._heap, (due, timer_id, receiver, data, owner))
        self._backend.add(timer_id, due, receiver, data)
        self._changed.set()

    def cancel(self, owner: Any) -> int:
        """Drop every pending timer of ``owner`` (by identity), unfired; how many."""
        keep: list[tuple[float, int, str, bytes, Any]] = []
        dropped: list[tuple[float, int, str, bytes, Any]] = []
        for entry in self._heap:
            (dropped if entry[4] is owner else keep).append(entry)
        if dropped:
            heapq.heapify(keep)
            self._heap = keep
            for entry in dropped:
                self._backend.remove(entry[1])
            self.cancelled += len(dropped)
            self._changed.set()
        return len(dropped)

    def fire_due(self) -> float | None:
        """Route every due message; the delay until the next one (None: no timers)."""
        heap, now = self._heap, self._clock.monotonic()
        while heap and heap[0][0] <= now:
            _due, timer_id, receiver, data, owner = heapq.heappop(heap)
            if self._route(receiver, data) == Offer.FULL:  # full mailbox: try again shortly
                heapq.heappush(heap, (now + BACKPRESSURE_RETRY, timer_id, receiver, data, owner))
                break
            self._backend.remove(timer_id)
            if self.spans is not None and data[:_HEAD_LEN] == HEAD:
                self.spans.step(
                    "caxton.timer", data, time_ns(), {"messaging.destination.name": receiver}
                )
            if owner is not None and self._released is not None:
                self._released(owner)
        return heap[0][0] - now if heap else None

    async def serve(self) -> None:
        """Fire timers until cancelled."""
        while True:
            wait = self.fire_due()
            self._changed.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait()
            except TimeoutError:
                pass
