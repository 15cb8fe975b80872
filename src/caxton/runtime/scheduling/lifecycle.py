"""Instance lifecycle on a worker: create, initialise, restore, hibernate, drop; commands.

`InstanceLifecycle` is a part of `executor.Worker` (its ``lifecycle``), apart from the message
hot path: these run once per start, restart, hibernation or command message, on the worker
thread that owns the agent at that moment. It reaches the worker only through what it is given
at construction: the services, the call context, the counters, the per-message deadline and two
callbacks (`Worker.set_state`, `Worker._failed`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

from caxton.errors import AgentFailure, AgentStartFailed
from caxton.runtime.agent import Agent, AgentSpec, AgentState, AgentStatistics
from caxton.runtime.sandbox import host
from caxton.runtime.sandbox.instance import Instance
from caxton.runtime.sandbox.kvstore import AgentKv
from caxton.runtime.sandbox.logs import OutputCapture
from caxton.runtime.stats import WorkerCounters

if TYPE_CHECKING:
    from caxton.runtime.scheduling.executor import Services

__all__ = ["Failed", "InstanceLifecycle"]

_RUNNING = AgentState.RUNNING
_HIBERNATED = AgentState.HIBERNATED


class Failed(Protocol):
    """`Worker._failed`: report a failed message (and drop the instance if it ``crashed``)."""

    def __call__(
        self, agent: Agent, data: bytes, failure: AgentFailure, elapsed: float, *, crashed: bool
    ) -> None: ...


class InstanceLifecycle:
    """The agents' instances on one worker: control operations, instances, command runs."""

    def __init__(
        self,
        svc: Services,
        cx: host.CallContext,
        counters: WorkerCounters,
        *,
        deadline: Any,  # c_uint64 epoch ticks per message (the worker's, shared)
        set_state: Callable[[Agent, AgentState], None],
        failed: Failed,
    ) -> None:
        self.svc = svc
        self.cx = cx
        self.counters = counters
        self.deadline = deadline
        self.startup_ticks = svc.engine.deadline_ticks(svc.config.agent_startup_timeout)
        self.set_state = set_state
        self._failed = failed
        #: Agents this worker hibernated (for statistics).
        self.hibernations = 0

    # -- control operations (queued by `Runtime`, run between two messages) ------------------

    def op_start(self, agent: Agent, spec: AgentSpec, compiled: Any, limit: int) -> AgentStatistics:
        """(Re)start ``agent`` with ``spec`` and ``compiled``: load kv, start a fresh instance."""
        svc = self.svc
        agent.spec, agent.compiled, agent.kind = spec, compiled, compiled.info.kind
        agent.memory_limit = limit
        agent.kv = self.agent_kv(spec.name)
        self.drop_instance(agent)
        svc.snapshots.delete(spec.name)
        if agent.kind == "reactor":
            agent.inst = self.start_instance(agent)
        agent.budget.reset()
        agent.last_active = svc.clock.monotonic()
        agent.closed = False
        self.set_state(agent, AgentState.RUNNING)
        return agent.statistics()

    def op_load(self, agent: Agent, state: AgentState) -> AgentStatistics:
        """Register a persisted agent without an instance (stopped, failed or hibernated).

        A hibernated agent keeps its snapshot: its next message restores it.
        """
        agent.kv = self.agent_kv(agent.name)
        agent.last_active = self.svc.clock.monotonic()
        agent.closed = state is not _HIBERNATED
        self.set_state(agent, state)
        return agent.statistics()

    def op_stop(self, agent: Agent) -> None:
        """Close the mailbox (queued messages stay) and drop the instance."""
        agent.closed = True
        self.drop_instance(agent)
        self.svc.snapshots.delete(agent.name)
        self.set_state(agent, AgentState.STOPPED)

    def op_upgrade(self, agent: Agent, compiled: Any, version: int) -> AgentStatistics:
        """Switch to ``compiled``; a live reactor gets its new instance before the old goes."""
        old = (agent.spec, agent.compiled, agent.kind, agent.inst)
        agent.spec = dataclasses.replace(agent.spec, version=version)
        agent.compiled, agent.kind = compiled, compiled.info.kind
        live = agent.state in (AgentState.RUNNING, AgentState.HIBERNATED)
        if live and agent.kind == "reactor":
            try:
                agent.inst = self.start_instance(agent)
            except AgentStartFailed:
                agent.spec, agent.compiled, agent.kind, agent.inst = old
                raise
        else:
            agent.inst = None
        if old[3] is not None:
            old[3].close()
        self.svc.snapshots.delete(agent.name)
        if live:
            self.set_state(agent, AgentState.RUNNING)
        return agent.statistics()

    def op_remove(self, agent: Agent) -> list[bytes]:
        """Close the agent for good; drop instance, snapshot and kv; return queued messages."""
        with agent.lock:
            agent.closed = True
            queued = list(agent.mailbox)
            agent.mailbox.clear()
            agent.popped_bytes = agent.offered_bytes
        self.drop_instance(agent)
        self.svc.snapshots.delete(agent.name)
        self.svc.kv.drop(agent.name)
        if agent.spec.grant_dir is not None:
            self.svc.engine.temp_storage.discard(agent.spec.grant_dir)
        return queued

    # -- instances ---------------------------------------------------------------------------

    def instantiate(
        self, agent: Agent, *, stdin: bytes | None = None, stdout: Any = None
    ) -> Instance:
        """A new instance of the agent's current module (no initialisation calls)."""
        svc = self.svc
        if agent.stdout is None:
            agent.stdout = OutputCapture(agent.logs, 1, budget=host.LOG_BUDGET)
            agent.stderr = OutputCapture(agent.logs, 2, budget=host.LOG_BUDGET)
        spec = agent.spec
        fuel = spec.fuel if spec.fuel is not None else svc.config.fuel
        engine = svc.engine
        granted = None
        if spec.grant_dir is not None:
            engine.temp_storage.add(spec.grant_dir)
            granted = (engine.relay_pre(), engine.temp_storage)
        return Instance(
            engine.wasm,
            engine.instance_pre(agent.compiled.module, granted=granted is not None),
            reactor=agent.kind == "reactor",
            name=agent.name,
            env=spec.env,
            grant_dir=spec.grant_dir,
            memory_limit=agent.memory_limit,
            fuel=fuel if svc.engine.fuel_enabled else None,
            deadline_ticks=self.startup_ticks,
            stdout=stdout or agent.stdout,
            stderr=agent.stderr,
            stdin=stdin,
            entry_type=engine.entry_type,
            granted=granted,
        )

    def start_instance(self, agent: Agent) -> Instance:
        """Instantiate and initialise (``_initialize``, then ``caxton_init``) a fresh instance.

        Raises `AgentStartFailed` with the agent's recent log lines in its details.
        """
        inst: Instance | None = None
        try:
            inst = self.instantiate(agent)
            self.cx.enter(agent, inst, None)
            inst.call_optional("_initialize", self.startup_ticks)
            rc = inst.call_optional("caxton_init", self.startup_ticks)
            if rc:
                raise AgentFailure(f"caxton_init returned {rc}", cause="returned_error")
        except AgentFailure as failure:
            if inst is not None:
                inst.close()
            agent.stdout.reset()
            agent.stderr.reset()
            logs = [f"[{line.level}] {line.text}" for line in agent.logs.recent(50)]
            raise AgentStartFailed(
                f"agent {agent.name!r} failed to start: {failure.message}",
                details={"cause": failure.cause, "logs": logs},
            ) from failure
        agent.stdout.reset()
        agent.stderr.reset()
        inst.refresh()
        agent.memory_bytes = inst.size
        return inst

    def ensure_instance(self, agent: Agent) -> Instance:
        """The agent's live instance: restored from its snapshot, or fresh after a crash."""
        if agent.state is _HIBERNATED:
            snapshot = self.svc.snapshots.load(agent.name)
            if snapshot is None or snapshot.version != agent.spec.version:
                inst = self._fresh(agent)
            else:
                inst = self.instantiate(agent)
                try:
                    inst.restore(snapshot, agent.compiled.info.saved_globals)
                except AgentFailure:
                    inst.close()
                    raise
                inst.refresh()
                agent.memory_bytes = inst.size
            self.svc.snapshots.delete(agent.name)
            agent.inst = inst
            self.set_state(agent, _RUNNING)
            return inst
        inst = agent.inst = self._fresh(agent)
        return inst

    def _fresh(self, agent: Agent) -> Instance:
        try:
            return self.start_instance(agent)
        except AgentStartFailed as exc:
            agent.closed = True
            self.set_state(agent, AgentState.FAILED)
            raise AgentFailure(exc.message, cause="returned_error", details=exc.details) from exc

    def agent_kv(self, name: str) -> AgentKv:
        """A fresh key/value view for agent ``name`` (nothing is read until it is used)."""
        config = self.svc.config
        return AgentKv(
            name,
            self.svc.kv,
            max_keys=config.agent_kv_max_keys,
            max_bytes=config.agent_kv_max_bytes,
            cache_size=config.agent_kv_cache_size,
        )

    def drop_instance(self, agent: Agent) -> None:
        """Close the agent's instance, if any, and forget its cached key/value entries."""
        inst, agent.inst = agent.inst, None
        agent.memory_bytes = 0
        if agent.kv is not None:
            agent.kv.clear_cache()
        if inst is not None:
            inst.close()

    def hibernate(self, agent: Agent) -> bool:
        """Save memory and globals, drop the instance; False if there is nothing to hibernate
        (or a snapshot could not keep the agent's state: `ModuleInfo.unsaved_state`)."""
        inst = agent.inst
        if agent.kind != "reactor" or inst is None or agent.state is not _RUNNING:
            return False
        info = agent.compiled.info
        if info.unsaved_state is not None:
            return False
        self.svc.snapshots.save(agent.name, inst.snapshot(agent.spec.version, info.saved_globals))
        self.drop_instance(agent)
        self.hibernations += 1
        self.set_state(agent, _HIBERNATED)
        return True

    def handle_command(self, agent: Agent, data: bytes) -> None:
        """Run a command module's ``_start`` with ``data`` on stdin; its JSON lines are sent."""
        stdout = OutputCapture(agent.logs, 1, budget=host.LOG_BUDGET, keep=True)
        t0 = perf_counter()
        failure: AgentFailure | None = None
        inst: Instance | None = None
        try:
            inst = self.instantiate(agent, stdin=data, stdout=stdout)
            self.cx.enter(agent, inst, data)
            inst.call_optional("_start", self.deadline.value)
        except AgentFailure as exc:
            if exc.cause != "exit" or exc.details.get("exit_code") != 0:
                failure = exc
        finally:
            if inst is not None:
                inst.close()
        elapsed = perf_counter() - t0
        stdout.flush()
        for line in stdout.lines:
            text = line.strip()
            if text.startswith(b"{"):
                rc = self.cx.send(text)
                if rc:
                    agent.logs.write(2, f"stdout message rejected with {rc}: {text[:200]!r}")
            elif text:
                agent.logs.write(1, text.decode("utf-8", "replace"))
        if failure is not None:
            self._failed(agent, data, failure, elapsed, crashed=False)
            return
        agent.stderr.reset()
        agent.messages_handled += 1
        self.counters.record("ok", elapsed)
