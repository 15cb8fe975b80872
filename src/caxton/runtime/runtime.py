"""`Runtime`: the agent runtime's facade for the node (lifecycle, delivery, statistics).

Everything that touches an agent's instance runs on a worker thread: messages, and control
operations (start, stop, upgrade, hibernate, remove), which are queued on the agent and run
between two messages. That is how "the message being handled finishes first" holds for stop and
upgrade without locks around wasm. The async methods here queue a control operation and await
its future; `deliver_nowait` is the thread-safe entry for messages from the event loop.
"""

from __future__ import annotations

import asyncio
import enum
import math
from collections.abc import Callable
from typing import Any

from caxton.clock import SYSTEM_CLOCK, Clock
from caxton.config.schema import RuntimeConfig
from caxton.errors import (
    AgentAlreadyExists,
    AgentNotFound,
    AgentStartFailed,
    MailboxClosed,
    MessageTooLarge,
    WouldBlock,
)
from caxton.runtime.agent import Agent, AgentSpec, AgentState, AgentStatistics
from caxton.runtime.delivery import Delivery, LocalDelivery, Offer, Origin
from caxton.runtime.engine import Compiled, Engine
from caxton.runtime.ports import (
    AgentEvents,
    KvBackend,
    MemoryKv,
    MemorySnapshots,
    NullEvents,
    SnapshotBackend,
)
from caxton.runtime.sandbox.logbudget import INTERVAL as LOG_INTERVAL
from caxton.runtime.sandbox.logs import LogLine
from caxton.runtime.scheduling.executor import Services, Worker
from caxton.runtime.scheduling.maintenance import Candidate, choose_hibernations
from caxton.runtime.scheduling.scheduler import Scheduler
from caxton.runtime.scheduling.supervisor import RestartBudget
from caxton.runtime.scheduling.timers import MemoryTimers, TimerBackend, TimerQueue
from caxton.runtime.stats import DEFAULT_BUCKETS, RuntimeStatistics, merge
from caxton.runtime.tracing import SpanLog
from caxton.tasks import TaskSet
from caxton.wire.header import header_of

__all__ = ["Runtime"]


class _State(enum.Enum):
    UNSTARTED = "unstarted"
    RUNNING = "running"
    CLOSED = "closed"


class Runtime:
    """Runs agents: one message at a time per agent, on a pool of worker threads."""

    def __init__(
        self,
        config: RuntimeConfig,
        *,
        engine: Engine,
        kv: KvBackend | None = None,
        snapshots: SnapshotBackend | None = None,
        events: AgentEvents | None = None,
        delivery: Delivery | None = None,
        external: Callable[[str, bytes], None] | None = None,
        timers: TimerBackend | None = None,
        clock: Clock = SYSTEM_CLOCK,
        duration_buckets: tuple[float, ...] = DEFAULT_BUCKETS,
        max_restarts: int = 5,
        restart_window: float = 60.0,
        spans: SpanLog | None = None,
    ) -> None:
        self.config = config
        #: Where traced handling is recorded (None: tracing off; `caxton.runtime.tracing`).
        self.spans = spans
        self.engine = engine
        self.kv = kv if kv is not None else MemoryKv()
        self.snapshots = snapshots if snapshots is not None else MemorySnapshots()
        self.events = events if events is not None else NullEvents()
        #: The port to message delivery (`caxton.runtime.delivery`); ``external`` is the
        #: shorthand for a bare runtime's `LocalDelivery`.
        self.delivery: Delivery = delivery if delivery is not None else LocalDelivery(external)
        self.clock = clock
        self._timer_backend = timers if timers is not None else MemoryTimers()
        self._buckets = tuple(duration_buckets)
        self._budget = (max_restarts, restart_window)
        self._agents: dict[str, Agent] = {}
        self._state = _State.UNSTARTED
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduler: Scheduler | None = None
        self._tasks = TaskSet("runtime")
        self._timers: TimerQueue | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers, the epoch ticker, the timer and maintenance tasks."""
        if self._state is not _State.UNSTARTED:
            raise RuntimeError(f"runtime is {self._state.value}")
        loop = self._loop = asyncio.get_running_loop()
        self._timers = TimerQueue(
            self.clock, self.send_from_loop, self._timer_backend, self._timer_released
        )
        self._timers.spans = self.spans
        services = Services(
            engine=self.engine,
            config=self.config,
            delivery=self.delivery,
            kv=self.kv,
            snapshots=self.snapshots,
            events=self.events,
            clock=self.clock,
            loop=loop,
            add_timer=self._add_timer,
            timers_writable=self._timer_backend.writable,
            agents=self._agents,
            spans=self.spans,
        )
        count = self.config.max_concurrent_executions
        if self.config.cpu_quota:
            count = min(count, math.ceil(self.config.cpu_quota))
        workers = [Worker(i, services, self._buckets) for i in range(max(1, count))]
        stack = self.config.wasm_stack_limit
        self._scheduler = Scheduler(
            workers, stack_size=stack * 2 + (4 << 20) if stack > 2 << 20 else 0
        )
        self.engine.start()
        self._scheduler.start()
        self._tasks.service(self._timers.serve(), "caxton-timers")
        self._tasks.service(self._maintenance(), "caxton-maintenance")
        self._tasks.service(self._log_summaries(), "caxton-log-summaries")
        self._state = _State.RUNNING

    async def aclose(self) -> None:
        """Stop accepting, let in-flight messages finish (``agent_shutdown_timeout``), stop.

        Queued messages are not handled (the node's store redelivers them). Idempotent.
        """
        if self._state is not _State.RUNNING:
            self._state = _State.CLOSED
            return
        self._state = _State.CLOSED
        for agent in self._agents.values():
            with agent.lock:
                agent.closed = True
        await self._tasks.aclose()
        assert self._scheduler is not None
        timeout = self.config.agent_shutdown_timeout
        if await asyncio.to_thread(self._scheduler.stop, timeout):
            for agent in self._agents.values():
                inst, agent.inst = agent.inst, None
                if inst is not None:
                    inst.close()
        await asyncio.sleep(0)  # let the workers' last event batches run

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- agents ------------------------------------------------------------------------------

    def _agent(self, name: str) -> Agent:
        agent = self._agents.get(name)
        if agent is None:
            raise AgentNotFound(f"no agent named {name!r}")
        return agent

    async def _control(self, agent: Agent, fn: Callable[[Worker], Any]) -> Any:
        if self._state is not _State.RUNNING or self._scheduler is None:
            raise MailboxClosed("the runtime is not running")
        future, wake = agent.submit(fn)
        if wake:
            self._scheduler.wake_urgent(agent)
        elif agent.slow:  # it may be parked, waiting for a slow slot (see `scheduler`)
            self._scheduler.nudge(agent)
        return await asyncio.wrap_future(future)

    async def start_agent(self, spec: AgentSpec, compiled: Compiled) -> AgentStatistics:
        """Start a new agent, or start a stopped/failed one again (with this spec and module).

        Raises `AgentAlreadyExists` if it is running, `AgentStartFailed` (details carry the
        agent's log lines) when ``caxton_init`` fails, traps or passes its deadline.
        """
        limit = self._memory_limit(spec)
        agent = self._agents.get(spec.name)
        created = agent is None
        if agent is None:
            agent = self._new_agent(spec, compiled)
        elif agent.state not in (AgentState.STOPPED, AgentState.FAILED):
            raise AgentAlreadyExists(f"agent {spec.name!r} is {agent.state.value}")
        target = agent
        try:
            result: AgentStatistics = await self._control(
                agent, lambda worker: worker.lifecycle.op_start(target, spec, compiled, limit)
            )
        except AgentStartFailed:
            if created:
                self._agents.pop(spec.name, None)
            raise
        return result

    def _memory_limit(self, spec: AgentSpec) -> int:
        limit = self.config.wasm_memory_limit
        return limit if spec.memory_limit is None else min(limit, spec.memory_limit)

    def _new_agent(self, spec: AgentSpec, compiled: Compiled) -> Agent:
        agent = Agent(
            spec,
            compiled,
            capacity=self.config.mailbox_capacity,
            memory_limit=self._memory_limit(spec),
            budget=RestartBudget(*self._budget),
            max_timers=self.config.agent_max_timers,
            max_queued_bytes=self.config.mailbox_max_bytes,
            log_rates=(
                self.config.agent_log_bytes_per_second,
                self.config.agent_log_lines_per_second,
            ),
        )
        self._agents[spec.name] = agent
        return agent

    async def load_agent(
        self, spec: AgentSpec, compiled: Compiled, state: AgentState
    ) -> AgentStatistics:
        """Register a persisted agent in ``state`` (stopped, failed or hibernated), no instance.

        The node uses it at start: a stopped or failed agent waits for `start_agent`; a
        hibernated one keeps its snapshot and is restored by its next message.
        """
        if state not in (AgentState.STOPPED, AgentState.FAILED, AgentState.HIBERNATED):
            raise ValueError(f"cannot load an agent as {state.value}")
        if spec.name in self._agents:
            raise AgentAlreadyExists(f"agent {spec.name!r} exists already")
        agent = self._new_agent(spec, compiled)
        try:
            result: AgentStatistics = await self._control(
                agent, lambda worker: worker.lifecycle.op_load(agent, state)
            )
        except BaseException:
            self._agents.pop(spec.name, None)
            raise
        return result

    def schedule(self, delay: float, receiver: str, data: bytes, owner: str | None = None) -> None:
        """Arm a timer from the loop thread (how the node re-arms persisted timers).

        ``owner`` (the agent that scheduled it) counts it among that agent's pending timers
        (re-armed timers were accepted once: they count even above ``agent_max_timers``).
        """
        if self._timers is None:
            raise MailboxClosed("the runtime is not running")
        agent = self._agents.get(owner) if owner is not None else None
        if agent is not None:
            with agent.lock:
                agent.timers += 1
        self._timers.add(delay, receiver, data, agent)

    def _add_timer(self, delay: float, receiver: str, data: bytes, owner: Agent | None) -> None:
        """A timer an agent's ``schedule`` accepted, on the loop thread: armed, unless the agent
        was removed since (then it is dropped, as `remove_agent` dropped its armed ones)."""
        assert self._timers is not None
        if owner is not None and self._agents.get(owner.name) is not owner:
            self._timers.cancelled += 1
            return
        self._timers.add(delay, receiver, data, owner)

    def _timer_released(self, owner: Agent) -> None:
        with owner.lock:
            owner.timers = max(0, owner.timers - 1)

    async def stop_agent(self, name: str) -> None:
        """Stop an agent after its current message; queued messages stay for the next start."""
        agent = self._agent(name)
        await self._control(agent, lambda worker: worker.lifecycle.op_stop(agent))

    async def upgrade_agent(self, name: str, compiled: Compiled, version: int) -> AgentStatistics:
        """Switch to a new module: the current message finishes on the old version.

        The new instance is started before the old one is dropped; if it fails to start, the
        agent keeps running the old version and `AgentStartFailed` is raised.
        """
        agent = self._agent(name)
        result: AgentStatistics = await self._control(
            agent, lambda worker: worker.lifecycle.op_upgrade(agent, compiled, version)
        )
        return result

    async def remove_agent(self, name: str) -> list[bytes]:
        """Remove an agent and its kv data; returns the messages still queued for it."""
        agent = self._agent(name)
        queued: list[bytes] = await self._control(
            agent, lambda worker: worker.lifecycle.op_remove(agent)
        )
        if self._agents.get(name) is agent:
            del self._agents[name]
        if self._timers is not None:  # its timers never fire (nor reach a later namesake)
            self._timers.cancel(agent)
        return queued

    def sends_over_budget(self) -> int:
        """Sends refused with ``ERR_OVER_BUDGET`` since start, all agents together."""
        return sum(agent.sends_over_budget for agent in list(self._agents.values()))

    async def flush_journal(self) -> None:
        """Hand what the delivery journal recorded so far to storage.

        A storage write submitted after this commits after those records (the writer keeps
        order): `AgentService.remove` relies on it to dead-letter every pending delivery.
        """
        journal = self.delivery.journal
        if journal is not None:
            await asyncio.to_thread(journal.flush)

    async def hibernate(self, name: str) -> bool:
        """Save the agent's memory and globals, drop its instance; the next message restores it.

        False if there was nothing to hibernate, or a snapshot could not keep the agent's
        state (a mutable global of a type it cannot save): such an agent stays live.
        """
        agent = self._agent(name)
        done: bool = await self._control(agent, lambda worker: worker.lifecycle.hibernate(agent))
        return done

    # -- messages ----------------------------------------------------------------------------

    def deliver_nowait(self, name: str, data: bytes) -> None:
        """Queue a message for a local agent (thread-safe).

        Raises `AgentNotFound`, `MessageTooLarge`, `MailboxClosed` (stopped, failed or shutting
        down) or `WouldBlock` (mailbox full).
        """
        if len(data) > self.config.max_message_size:
            raise MessageTooLarge(f"message of {len(data)} bytes is above the limit")
        agent = self._agent(name)
        self._settle(agent, agent.offer(data))

    async def deliver(self, name: str, data: bytes, *, wait: float = 1.0) -> None:
        """Queue a message, waiting up to ``wait`` seconds for mailbox space (`WouldBlock`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        delay = 0.001
        while True:
            try:
                self.deliver_nowait(name, data)
                return
            except WouldBlock:
                now = loop.time()
                if now >= deadline:
                    raise
                # Back off: hundreds of callers waiting on one full mailbox must not turn the
                # event loop into a busy poller (a fixed 2 ms poll did, under bulk sends).
                await asyncio.sleep(min(delay, deadline - now))
                delay = min(delay * 2, 0.05)

    def deliver_recovered(self, name: str, data: bytes) -> None:
        """Queue a delivery accepted before a restart, even into a full mailbox.

        It was in the mailbox (or being handled) when the node stopped, so it goes ahead of
        what agents send meanwhile: up to twice the capacity, then `WouldBlock` as
        `deliver_nowait` (an agent sending to itself must not hold recovery up).
        """
        agent = self._agent(name)
        self._settle(agent, agent.offer_within(data, 2 * agent.capacity))

    def _settle(self, agent: Agent, rc: Offer) -> None:
        """Wake ``agent`` for a message it just took, or raise why it did not take it."""
        if rc is Offer.WAKE:
            assert self._scheduler is not None
            self._scheduler.wake(agent)
        elif rc is Offer.CLOSED:
            raise MailboxClosed(f"agent {agent.name!r} is not accepting messages")
        elif rc is Offer.FULL:
            raise WouldBlock(f"the mailbox of {agent.name!r} is full")

    def enqueue_local(self, name: str, data: bytes) -> Offer:
        """Queue a message for a running local agent: `Offer.QUEUED` (it is woken if need
        be), `Offer.FULL`, or `Offer.CLOSED` when no local agent accepts messages by that name."""
        agent = self._agents.get(name)
        if agent is None:
            return Offer.CLOSED
        rc = agent.offer(data)
        if rc is Offer.WAKE:
            self._scheduler.wake(agent)  # type: ignore[union-attr]
            return Offer.QUEUED
        return rc

    def send_from_loop(self, receiver: str, data: bytes, conversation: str | None = None) -> int:
        """Record and deliver a message that enters on the loop thread: a due timer, a
        `failure` reply. 0, or ``abi.ERR_BACKPRESSURE`` when the local mailbox is full
        (nothing kept: the caller retries or dead-letters it).

        A local agent's mailbox first; anything else goes to `Delivery.not_local`.
        """
        journal = self.delivery.journal
        if journal is not None:
            if conversation is None:
                found = header_of(data).conversation_id
                conversation = found if isinstance(found, str) else None
            journal.sent(conversation, data, receiver)
        rc = self.enqueue_local(receiver, data)
        if rc is Offer.QUEUED:
            return 0
        if journal is not None:
            if rc is Offer.FULL:
                journal.retract(data)
            journal.handled(receiver, data)
        if rc is Offer.FULL:
            return int(rc)
        self.delivery.not_local(receiver, data, Origin.LOOP)
        return 0

    # -- maintenance -------------------------------------------------------------------------

    async def _maintenance(self) -> None:
        while True:
            await asyncio.sleep(self.config.gc_interval)
            await self.maintain()

    async def _log_summaries(self) -> None:
        """Report each agent's log drops of the last interval, even when it went quiet."""
        while True:
            await asyncio.sleep(LOG_INTERVAL)
            for agent in list(self._agents.values()):
                agent.logs.budget.summarise()

    async def maintain(self) -> list[str]:
        """One maintenance pass: hibernate idle agents and LRU agents under memory pressure."""
        now = self.clock.monotonic()
        candidates = [
            Candidate(a.name, a.last_active or now, a.memory_bytes, a.scheduled or bool(a.mailbox))
            for a in self._agents.values()
            if a.kind == "reactor"
            and a.state is AgentState.RUNNING
            and a.inst is not None
            and a.compiled.info.unsaved_state is None
        ]
        names = choose_hibernations(
            candidates,
            now=now,
            idle_timeout=self.config.agent_idle_timeout,
            memory_in_use=sum(a.memory_bytes for a in self._agents.values()),
            memory_limit=self.config.memory_limit,
            pressure_threshold=self.config.memory_pressure_threshold,
            reclaim=self.config.agent_memory_reclaim,
        )
        results = await asyncio.gather(*(self.hibernate(n) for n in names), return_exceptions=True)
        return [n for n, ok in zip(names, results, strict=True) if ok is True]

    # -- introspection -----------------------------------------------------------------------

    def agents(self) -> list[str]:
        """Names of all agents, sorted."""
        return sorted(self._agents)

    def has_agent(self, name: str) -> bool:
        """Whether an agent of that name exists (any state); a dict lookup, no snapshot."""
        return name in self._agents

    def agent_statistics(self, name: str) -> AgentStatistics:
        """A snapshot of one agent."""
        return self._agent(name).statistics()

    def recent_logs(self, name: str, n: int | None = None) -> list[LogLine]:
        """The agent's last ``n`` log lines, oldest first."""
        return self._agent(name).logs.recent(n)

    def statistics(self) -> RuntimeStatistics:
        """A snapshot of the whole runtime."""
        workers = self._scheduler.workers if self._scheduler is not None else []
        executions, buckets, total = merge([w.counters for w in workers])
        agents = list(self._agents.values())
        temp = self.engine.temp_storage
        return RuntimeStatistics(
            executions=executions,
            duration_bounds=self._buckets,
            duration_buckets=buckets,
            duration_sum=total,
            memory_bytes=sum(a.memory_bytes for a in agents),
            agents_total=len(agents),
            agents_active=sum(1 for a in agents if a.inst is not None),
            agents_hibernated=sum(1 for a in agents if a.state is AgentState.HIBERNATED),
            agents_failed=sum(1 for a in agents if a.state is AgentState.FAILED),
            hibernations=sum(w.lifecycle.hibernations for w in workers),
            restarts=sum(w.restarts for w in workers),
            mailbox_depth=sum(len(a.mailbox) for a in agents),
            workers=len(workers),
            temp_storage_bytes=temp.used,
            temp_storage_limit=temp.limit,
            temp_storage_refused=temp.refused,
            logs_dropped={
                a.name: (a.logs.budget.dropped, a.logs.budget.dropped_bytes)
                for a in agents
                if a.logs.budget.dropped
            },
        )
