"""A worker: runs one agent's messages at a time on its thread; the message hot path.

Per reactor message: set the epoch deadline (and fuel), then the instance's `MessageEntry` calls
``caxton_alloc(len)`` unchecked, copies the bytes into linear memory and calls
``caxton_handle(ptr, len)`` (in C when the extension is built, else through ctypes); check the
result. Host callbacks made meanwhile find this worker's `CallContext` in a thread-local. About
4-6 µs per message including both wasm calls (notes/wasm-hotpath.md).

Failures stay inside the agent: the call's trap or error is translated at `_errors.failure_from`,
the message is reported failed (with its bytes) to the owner, the instance is dropped, and the
agent gets a fresh one on its next message unless its restart budget is exhausted (then it is
``failed``). Events for the event loop are collected in `pending` and posted in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Sized
from ctypes import byref, c_uint64
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any

import wasmtime

from caxton.clock import Clock
from caxton.config.schema import RuntimeConfig
from caxton.errors import AgentFailure
from caxton.runtime.agent import Agent, AgentState
from caxton.runtime.delivery import Delivery, Origin
from caxton.runtime.engine import Engine
from caxton.runtime.ports import AgentEvents, KvBackend, SnapshotBackend
from caxton.runtime.sandbox import _ffi, host
from caxton.runtime.sandbox._errors import describe, failure_from
from caxton.runtime.scheduling.lifecycle import InstanceLifecycle
from caxton.runtime.stats import WorkerCounters
from caxton.runtime.tracing import SpanLog, current
from caxton.wire import trace as wire_trace

if TYPE_CHECKING:
    from caxton.runtime.scheduling.scheduler import Scheduler

#: Agents a worker keeps on its own run queue before spilling to the shared one.
LOCAL_LIMIT = 8

__all__ = ["BATCH", "Services", "Worker"]

#: Messages of one agent handled before the worker looks at other ready agents.
BATCH = 64
#: Epoch ticks (10 ms each by default) one agent's batch may take: once past, the batch ends
#: after the current message and the agent waits its turn behind the others (`Worker.sliced`),
#: so an agent whose messages each take tens of milliseconds (never its deadline) cannot keep
#: a worker for 64 of them at a time.
SLICE_TICKS = 5
_I32_MAX = 0x7FFFFFFF  # a `deliver` result above this is `FAILED` or `BAD_POINTER`
_BAD_POINTER = _ffi.BAD_POINTER
_RUNNING = AgentState.RUNNING
_HIBERNATED = AgentState.HIBERNATED
_RUNNABLE = (_RUNNING, _HIBERNATED)
_MEMORY_CHECK = 0.1  # seconds between memory-size refreshes of a busy agent
_log = logging.getLogger("caxton.runtime")
_BUDGET = host.LOG_BUDGET


@dataclass(slots=True, kw_only=True)
class Services:
    """What workers need from the runtime."""

    engine: Engine
    config: RuntimeConfig
    delivery: Delivery
    kv: KvBackend
    snapshots: SnapshotBackend
    events: AgentEvents
    clock: Clock
    loop: asyncio.AbstractEventLoop
    add_timer: Callable[[float, str, bytes, Agent | None], None]  # runs on the loop thread
    timers_writable: Callable[[], bool]  # any thread: False while timers cannot be stored
    agents: dict[str, Agent]  # the runtime's agents by name (read-only here)
    spans: SpanLog | None = None  # with tracing on: where traced handling is recorded


def _run_batch(batch: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> None:
    for fn, args in batch:
        try:
            fn(*args)
        except Exception:  # an event consumer's bug must not stop the others
            _log.exception("event callback failed")


class Worker:
    """One worker thread's state: run queue, call slots, host context, counters; its agents'
    instances are managed by its `lifecycle` (`InstanceLifecycle`)."""

    def __init__(self, index: int, services: Services, bounds: tuple[float, ...]) -> None:
        self.index = index
        self.svc = services
        self.local: deque[Agent] = deque()
        self.pending: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.stopping = False
        #: Set by `run` when the batch ended because its time slice was used up (the
        #: scheduler then requeues the agent behind the other ready agents, and clears it).
        self.sliced = False
        self.counters = WorkerCounters(bounds)
        self._first_bound = bounds[0] if bounds else math.inf  # see `handle`
        self.restarts = 0
        self.scheduler: Scheduler | None = None  # set by the scheduler
        self._engine = services.engine
        journal = services.delivery.journal
        self.journal = journal
        self._not_local = services.delivery.not_local
        self._handled: Callable[[str, bytes], None] | None = (
            None if journal is None else journal.handled
        )
        # `journal.handled` inlined on the hot path (see `MessageJournal.hot_path`).
        self._record: Callable[[tuple[Any, ...]], None] | None = None
        self._journal_entries: Sized = ()
        self._flush_at = 0
        if journal is not None:
            self._record, self._journal_entries, self._flush_at = journal.hot_path()
        # `SYSTEM_CLOCK.monotonic` is `time.monotonic` itself (no Python frame per run).
        self._monotonic = services.clock.monotonic
        self.cx = host.CallContext(
            agents=services.agents,
            wake=self.wake_local,
            run_queue=self.local,
            route=self.not_local,
            schedule=self.schedule,
            timers_writable=services.timers_writable,
            max_message_size=services.config.max_message_size,
            journal=journal,
            max_sends_per_message=services.config.max_sends_per_message,
            max_external_sends_per_second=services.config.max_external_sends_per_second,
            locate=getattr(services.delivery, "locate", None),
        )
        self._sends_per_message = services.config.max_sends_per_message
        engine = services.engine
        self._deadline_ticks = engine.deadline_ticks(services.config.execution_timeout)
        self.deadline = _ffi.uint64(self._deadline_ticks)
        self._spans = services.spans
        #: The trace of the traced message handled now (`_handle_traced`), reused.
        accel = engine.accel
        self._trace: wire_trace.TraceContext = (
            wire_trace.TraceContext() if accel is None else accel.TraceContext()
        )
        self.lifecycle = InstanceLifecycle(
            services,
            self.cx,
            self.counters,
            deadline=self.deadline,
            set_state=self.set_state,
            failed=self._failed,
        )

    def bind(self) -> None:
        """Called on the worker's thread when it starts: log lines written there while it
        handles a traced message carry its trace (`caxton.runtime.tracing.current`)."""
        if self._spans is not None:
            current.handling = self._trace

    # -- loop-bound events -------------------------------------------------------------------

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the event loop thread with the next batch."""
        self.pending.append((fn, args))

    def not_local(self, receiver: str, data: bytes) -> int:
        """The host's route for a receiver that is no running local agent: to `Delivery` on
        the loop, with this worker's next event batch (no thread hop per message)."""
        self.pending.append((self._not_local, (receiver, data, Origin.AGENT)))
        return 0

    def flush(self) -> None:
        """Flush the message journal, then post the collected events to the loop in one hop."""
        if self.journal is not None:
            self.journal.flush(defer=True)
        if self.pending:
            batch, self.pending = self.pending, []
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens any more
                self.svc.loop.call_soon_threadsafe(_run_batch, batch)

    def schedule(self, delay: float, receiver: str, data: bytes) -> None:
        """The host's `schedule`: hand the timer to the loop thread (owned by the caller)."""
        agent = self.cx.agent
        self.post(self.svc.add_timer, delay, receiver, data, agent)

    def wake_local(self, agent: Agent) -> None:
        """Run an agent that a message sent on this worker just made ready.

        It goes on this worker's own run queue, so it is handled right after the current agent
        returns, on this thread; beyond `LOCAL_LIMIT`, or when another worker idles, it goes
        on the shared queue instead (see `scheduler`).
        """
        local = self.local
        scheduler = self.scheduler
        assert scheduler is not None
        if not local or (len(local) < LOCAL_LIMIT and not scheduler.idle):
            local.append(agent)
        else:
            scheduler.wake_shared(agent)

    def set_state(self, agent: Agent, state: AgentState) -> None:
        """Change an agent's state and tell the owner."""
        if agent.state is not state:
            agent.state = state
            self.post(self.svc.events.agent_state_changed, agent.name, state)

    # -- running an agent --------------------------------------------------------------------

    def run(self, agent: Agent, limit: int = BATCH) -> bool:
        """Run an agent's control operations and up to ``limit`` messages; True to requeue."""
        mailbox, control = agent.mailbox, agent.control
        processed = 0
        handle = self.handle
        # With tracing on, a message whose first key starts with "t" (a traced one starts
        # ``{"traceparent":``, `caxton.wire.trace`; the runtime writes others ``{"message_id"``
        # first) goes through `_handle_traced`, which checks it in full; with tracing off
        # nothing is looked at.
        traced = None if self._spans is None else self._handle_traced
        engine = self._engine
        started = engine.ticks
        while not self.stopping:
            if control:
                self._control(agent)
                continue
            # Test before popping instead of catching IndexError: a ping-pong agent finds its
            # mailbox empty after every message, and a raised-and-caught exception costs more
            # than the test. Safe: only the worker that owns the agent pops from its mailbox
            # (other threads only append, under the lock), so non-empty stays non-empty.
            state = agent.state
            if (
                (state is not _RUNNING and state is not _HIBERNATED)
                or processed >= limit
                or not mailbox
            ):
                break
            if processed:
                if agent.slow:  # a message ran into the deadline: others first
                    break
                if engine.ticks - started >= SLICE_TICKS:  # its time is up
                    self.sliced = True
                    break
            data = mailbox.popleft()
            agent.popped_bytes += len(data)
            try:
                if traced is not None and data[2:3] == b"t":
                    traced(agent, data)
                else:
                    handle(agent, data)
            except Exception as exc:  # a bug of ours: contain it like a crash of the agent
                _log.exception("handling a message for %s failed", agent.name)
                # The text is for operators (the log above has it): the agent's last_error and
                # the dead letter say only what kind of failure it was, never SQL or paths.
                internal = AgentFailure(
                    f"internal error ({type(exc).__name__}); see the server log", cause="trap"
                )
                self._failed(agent, data, internal, 0.0, crashed=True)
            processed += 1
        if processed:
            now = agent.last_active = self._monotonic()
            if now - agent.memory_checked > _MEMORY_CHECK:
                agent.memory_checked = now
                inst = agent.inst
                if inst is not None:
                    inst.refresh()
                    agent.memory_bytes = inst.size
        lock = agent.lock  # acquire/release: nothing in between can raise
        lock.acquire()
        if control or (mailbox and not self.stopping and agent.state in _RUNNABLE):
            lock.release()
            return True
        agent.scheduled = False
        lock.release()
        return False

    def _control(self, agent: Agent) -> None:
        fn, future = agent.control.popleft()
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(self))
        except BaseException as exc:
            future.set_exception(exc)

    def handle(self, agent: Agent, data: bytes, guest: bytes | None = None) -> None:
        """Handle one message; never raises (failures are reported and contained).

        ``guest``: what the agent is given, when that is not ``data`` itself (a traced message
        without its ``traceparent``: `_handle_traced`)."""
        inst = agent.inst
        if inst is None:
            if agent.kind != "reactor":
                before = agent.messages_handled
                self.lifecycle.handle_command(agent, data if guest is None else guest)
                if self._handled is not None and agent.messages_handled != before:
                    self._handled(agent.name, data)
                return
            try:
                inst = self.lifecycle.ensure_instance(agent)
            except AgentFailure as exc:
                self._failed(agent, data, exc, 0.0, crashed=False)
                return
        cx = self.cx
        cx.agent = agent
        cx.inst = inst
        cx.data = data
        cx.incoming = None
        cx.log_budget = _BUDGET
        cx.sends_left = self._sends_per_message
        entry = inst.entry
        # The deadline is relative to the epoch when it is set; re-arm it at most once per tick
        # (`deadline_ticks` includes a spare tick, so every message still gets its full time).
        tick = self._engine.ticks
        if inst.armed_at != tick:
            inst.armed_at = tick
            entry.arm(self._deadline_ticks)
        if inst.fuel is not None:
            _ffi.set_fuel(inst.ctx, inst.fuel)
        t0 = perf_counter()
        rc = entry.deliver(data if guest is None else guest)
        if rc > _I32_MAX:  # FAILED or BAD_POINTER
            self._call_failed(agent, data, rc, t0)
            return
        elapsed = perf_counter() - t0
        if agent.logs.output:
            agent.logs.output = False
            agent.stdout.reset()
            agent.stderr.reset()
        if rc:
            said = agent.logs.error_during(elapsed)
            error = AgentFailure(
                f"caxton_handle returned {rc}" + (f"; the agent logged: {said}" if said else ""),
                cause="returned_error",
                details={"log": said} if said else None,
            )
            self._failed(agent, data, error, elapsed, crashed=False)
            return
        agent.messages_handled += 1
        record = self._record
        if record is not None:  # journal.handled(agent.name, data), inlined
            record((agent.name, data))
            if len(self._journal_entries) >= self._flush_at:
                self.journal.flush()  # type: ignore[union-attr]
        counters = self.counters  # counters.record("ok", elapsed), inlined
        counters.executions[0] += 1
        # Nearly every message is faster than the first bound (100 µs by default): one float
        # compare instead of a bisect call (`bisect_left` gives 0 for these as well).
        first = self._first_bound
        counters.buckets[0 if elapsed <= first else bisect_left(counters.bounds, elapsed)] += 1
        counters.duration_sum += elapsed

    def _handle_traced(self, agent: Agent, data: bytes) -> None:
        """`handle`, recording a span for a message of a sampled trace (`caxton.wire.trace`).

        A message without a trace context is handled as `handle` does; for a traced one the
        host stamps every message the handler sends with a child context, and the times, the
        outcome and the fuel used go to the `SpanLog` (spans are built off this thread). The
        worker's `TraceContext` is the C one with the C hot path (`Engine.accel`).
        """
        context = self._trace
        if context.begin(data, agent.name) is None:
            self.handle(agent, data)
            return
        stamper = self.cx.stamper
        stamper.trace = context
        failures = agent.failures
        try:
            # The agent gets the message without the runtime's field: tracing never changes
            # what an agent sees (nor the bytes it parses).
            self.handle(agent, data, context.guest())
        finally:
            context.finish()
            stamper.trace = None
        outcome = "ok"
        if agent.failures != failures:
            outcome = (agent.last_error or "failed").split(":", 1)[0]
        fuel = None
        inst = agent.inst
        if inst is not None and inst.fuel is not None:
            left = c_uint64()
            if not _ffi.get_fuel(inst.ctx, byref(left)):
                fuel = inst.fuel.value - left.value
        spans = self._spans
        assert spans is not None
        records = spans.records
        if len(records) < spans.limit:  # `spans.add(record)`, inlined
            records.append(context.record(agent.spec.version, outcome, fuel))
        else:
            spans.dropped += 1

    def _call_failed(self, agent: Agent, data: bytes, rc: int, t0: float) -> None:
        elapsed = perf_counter() - t0
        inst = agent.inst
        if rc == _BAD_POINTER or inst is None or inst.entry is None:
            bad = AgentFailure("caxton_alloc returned a pointer outside memory", cause="trap")
            self._failed(agent, data, bad, elapsed, crashed=True)
            return
        error, trap = inst.entry.take_failure()
        exc: BaseException = _ffi.error_from_ptr(error) if error else _ffi.trap_from_ptr(trap)
        near = isinstance(exc, wasmtime.Trap) and inst.at_memory_limit()
        said = agent.logs.error_during(elapsed)
        failure = failure_from(exc, at_memory_limit=near, logged=said)
        self._failed(agent, data, failure, elapsed, crashed=True)

    def _failed(
        self, agent: Agent, data: bytes, failure: AgentFailure, elapsed: float, *, crashed: bool
    ) -> None:
        agent.failures += 1
        agent.last_error = describe(failure)
        if failure.cause == "deadline":
            agent.slow = True  # see `scheduler`: it no longer gets every worker
        self.counters.record(failure.cause, elapsed)
        if agent.stdout is not None:
            agent.stdout.reset()
            agent.stderr.reset()
        self.post(self.svc.events.message_failed, agent.name, bytes(data), failure)
        if not crashed:
            return
        self.lifecycle.drop_instance(agent)
        if agent.budget.allow(self.svc.clock.monotonic()):
            agent.restarts += 1
            self.restarts += 1
        else:
            agent.closed = True
            self.set_state(agent, AgentState.FAILED)
