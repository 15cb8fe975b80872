"""One deployed agent: its spec, state, mailbox, instance and counters.

An agent is owned by at most one worker at a time: `scheduled` is True from the moment it is put
on a run queue until the worker that ran it finds nothing left to do. Only that worker touches
the instance, kv view and counters; the mailbox, the control queue and the pending-timer count
are the only parts other threads write, always under `lock`.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from caxton.runtime.delivery import Offer
from caxton.runtime.sandbox.kvstore import AgentKv
from caxton.runtime.sandbox.logs import LogRing
from caxton.runtime.scheduling.supervisor import RestartBudget

if TYPE_CHECKING:
    from caxton.runtime.engine import Compiled

__all__ = [
    "Agent",
    "AgentSpec",
    "AgentState",
    "AgentStatistics",
]

# `Agent.offer`'s results, bound once (a module global is cheaper than the attribute).
_QUEUED, _WAKE, _CLOSED, _FULL = Offer.QUEUED, Offer.WAKE, Offer.CLOSED, Offer.FULL


class AgentState(enum.StrEnum):
    """The lifecycle states visible in the API."""

    LOADED = "loaded"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"
    HIBERNATED = "hibernated"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSpec:
    """What a deploy request says about one agent besides its module."""

    name: str
    version: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    memory_limit: int | None = None  # bytes; capped by runtime.wasm_memory_limit
    fuel: int | None = None  # per message; needs runtime.fuel to be set (engine metering)
    grant_dir: Path | None = None  # preopened as /data


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStatistics:
    """A snapshot of one agent for the API and ``caxton debug``."""

    name: str
    state: AgentState
    kind: str  # "reactor" | "command"
    version: int
    memory_limit: int
    fuel: int | None
    messages_handled: int
    failures: int
    restarts: int
    last_error: str | None
    memory_bytes: int
    mailbox_depth: int
    mailbox_capacity: int
    last_active: float | None  # runtime clock seconds
    logs_dropped: int


#: A control operation: a function of the worker running it, and its future.
Control = tuple[Callable[[Any], Any], "Future[Any]"]


class Agent:
    """The runtime's record of one agent."""

    __slots__ = (
        "budget",
        "capacity",
        "closed",
        "compiled",
        "control",
        "external_credit",
        "external_window",
        "failures",
        "inst",
        "kind",
        "kv",
        "last_active",
        "last_error",
        "lock",
        "logs",
        "mailbox",
        "max_queued_bytes",
        "max_timers",
        "memory_bytes",
        "memory_checked",
        "memory_limit",
        "messages_handled",
        "name",
        "offered_bytes",
        "popped_bytes",
        "restarts",
        "scheduled",
        "sender_json",
        "sends_over_budget",
        "slow",
        "spec",
        "state",
        "stderr",
        "stdout",
        "timers",
    )

    def __init__(
        self,
        spec: AgentSpec,
        compiled: Compiled,
        *,
        capacity: int,
        memory_limit: int,
        budget: RestartBudget,
        max_timers: int = 1000,
        log_rates: tuple[int, int] = (64 * 1024, 200),
        max_queued_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.name = spec.name
        self.spec = spec
        self.compiled = compiled
        self.kind: str = compiled.info.kind
        self.sender_json = msgspec.json.encode(spec.name)
        self.state = AgentState.LOADED
        self.capacity = capacity
        self.memory_limit = memory_limit
        self.budget = budget
        self.mailbox: deque[bytes] = deque()
        #: Bytes ever queued (under `lock`) and ever taken out (by the worker running the
        #: agent, or under `lock`): their difference is what the mailbox holds. Two counters
        #: with one writer each instead of one shared, so the hot path needs no lock to count.
        #: A message that would take the mailbox past ``max_queued_bytes`` is refused as if
        #: the mailbox were full (one message is always taken into an empty mailbox).
        self.offered_bytes = 0
        self.popped_bytes = 0
        self.max_queued_bytes = max_queued_bytes
        self.control: deque[Control] = deque()
        self.lock = threading.Lock()
        self.scheduled = False
        self.closed = False
        #: Its last message ran into ``execution_timeout``: it runs one message per turn, on
        #: at most all workers but one (see `scheduler`), until a message finishes in time.
        self.slow = False
        #: Timers this agent scheduled that have not fired (under `lock`), and their cap.
        self.timers = 0
        self.max_timers = max_timers
        self.inst: Any = None  # sandbox.instance.Instance while live
        self.kv: AgentKv | None = None  # set when the agent is started or loaded
        self.logs = LogRing(spec.name, bytes_per_second=log_rates[0], lines_per_second=log_rates[1])
        self.stdout: Any = None  # logs.OutputCapture, created with the first instance
        self.stderr: Any = None
        self.messages_handled = 0
        self.failures = 0
        self.restarts = 0
        self.last_error: str | None = None
        self.memory_bytes = 0
        self.memory_checked = 0.0  # clock time of the last memory-size refresh
        self.last_active: float | None = None
        # The send budget for receivers that are not running local agents (`host`): sends
        # left in the current one-second window, and when the window started.
        self.external_credit = 0
        self.external_window = float("-inf")
        self.sends_over_budget = 0  # sends refused with ERR_OVER_BUDGET

    def offer(self, data: bytes) -> Offer:
        """Queue one message: `Offer.QUEUED`, `Offer.WAKE`, `Offer.CLOSED` or `Offer.FULL`."""
        # acquire/release instead of ``with``: this runs for every message, and nothing
        # between them can raise (the context-manager protocol costs ~0.1 µs more).
        lock = self.lock
        lock.acquire()
        if self.closed:
            lock.release()
            return _CLOSED
        mailbox = self.mailbox
        size = len(data)
        if len(mailbox) >= self.capacity or (
            self.offered_bytes - self.popped_bytes + size > self.max_queued_bytes and mailbox
        ):
            lock.release()
            return _FULL
        mailbox.append(data)
        self.offered_bytes += size
        if self.scheduled:
            lock.release()
            return _QUEUED
        self.scheduled = True
        lock.release()
        return _WAKE

    def offer_within(self, data: bytes, limit: int) -> Offer:
        """`offer` with ``limit`` instead of the capacity (recovery after a restart)."""
        with self.lock:
            if self.closed:
                return _CLOSED
            size = len(data)
            if len(self.mailbox) >= limit or (
                self.offered_bytes - self.popped_bytes + size > self.max_queued_bytes
                and self.mailbox
            ):
                return _FULL
            self.mailbox.append(data)
            self.offered_bytes += size
            if self.scheduled:
                return _QUEUED
            self.scheduled = True
            return _WAKE

    def submit(self, fn: Callable[[Any], Any]) -> tuple[Future[Any], bool]:
        """Queue a control operation; returns its future and whether a wake is needed."""
        future: Future[Any] = Future()
        with self.lock:
            self.control.append((fn, future))
            if self.scheduled:
                return future, False
            self.scheduled = True
            return future, True

    def statistics(self) -> AgentStatistics:
        """A frozen snapshot (counters may be one message behind while the agent runs)."""
        return AgentStatistics(
            name=self.name,
            state=self.state,
            kind=self.kind,
            version=self.spec.version,
            memory_limit=self.memory_limit,
            fuel=self.spec.fuel,
            messages_handled=self.messages_handled,
            failures=self.failures,
            restarts=self.restarts,
            last_error=self.last_error,
            memory_bytes=self.memory_bytes,
            mailbox_depth=len(self.mailbox),
            mailbox_capacity=self.capacity,
            last_active=self.last_active,
            logs_dropped=self.logs.dropped,
        )
