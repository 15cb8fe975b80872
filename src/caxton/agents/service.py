"""`AgentService`: deploy, upgrade, roll back, stop, start, remove and show agents.

The one object the API and the CLI use for agents. It joins three things that must agree: the
engine (validation and the compiled-module cache), the runtime (instances and messages) and the
store (records, versions, modules). Each operation on one agent holds that agent's lock, so
operations on one agent never interleave; a deploy reserves its name before anything slow
happens, so of two concurrent deploys of one name exactly one wins.

Failure leaves nothing half done: a deploy whose ``caxton_init`` fails deletes the record it
stored; an upgrade or rollback whose module fails to start leaves the old version current and
running (the new module is only stored once it runs).

Whatever happens to the caller, an operation once begun runs to its end (`Operations`): a
caller that is cancelled (the HTTP request passed ``request_timeout``, or its client went away)
stops waiting, the operation completes or fails and undoes itself, and every view agrees.

Modules are compiled by `ModuleCompiler` and swapped (upgrade, rollback) by `Versions`; node
start brings the stored agents back through `Restorer`.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import shutil
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from caxton.agents._compiler import ModuleCompiler
from caxton.agents._model import AgentInfo, DeployRequest, check_env, check_limits, check_name
from caxton.agents._operations import Operations
from caxton.agents._registry import DeployedAgent, StateWriter
from caxton.agents._restore import KnownSnapshots, Restorer
from caxton.agents._stats import AgentServiceStatistics, metric_samples
from caxton.agents._versions import Versions
from caxton.agents.changes import AgentChanges, AgentSummary
from caxton.agents.stored import DirtyAgents
from caxton.config import Config
from caxton.errors import AgentAlreadyExists, AgentLimitReached, AgentNotFound, Error
from caxton.runtime import AgentSpec, AgentState, Engine, LogLine, Runtime
from caxton.storage import AgentRecord, Storage

__all__ = ["AgentService"]

#: Seconds between passes that write changed counters to the store.
COUNTER_FLUSH_INTERVAL = 5.0


def _nowhere(name: str) -> str | None:
    return None


class AgentService:
    """Agents of one node: lifecycle, persistence and what the API shows (module docstring).

    ``dirty`` is where the runtime's events (`PersistingEvents`) mark agents whose record must
    be written soon; ``snapshots`` is told which agents come back hibernated with a stored
    memory snapshot; ``changes`` hears of every change the service makes (and is the one the
    runtime's events tell of theirs). All are made by whoever wires the node, with the runtime.
    """

    def __init__(
        self,
        config: Config,
        *,
        storage: Storage,
        engine: Engine,
        runtime: Runtime,
        dirty: DirtyAgents,
        snapshots: KnownSnapshots,
        changes: AgentChanges | None = None,
    ) -> None:
        self.config = config
        #: Told of every change to an agent (the cluster's registry listens).
        self.changes = changes if changes is not None else AgentChanges()
        #: The node that hosts ``name`` elsewhere in the cluster, if any (set by the node with
        #: a cluster): a deploy of that name is refused as a duplicate.
        self.hosted_elsewhere: Callable[[str], str | None] = _nowhere
        self.storage = storage
        self.engine = engine
        self.runtime = runtime
        self._compiler = ModuleCompiler(engine, config.runtime.wasm_memory_limit)
        self._versions = Versions(agents=storage.agents, runtime=runtime, compiler=self._compiler)
        self._restorer = Restorer(
            storage=storage,
            runtime=runtime,
            engine=engine,
            compiler=self._compiler,
            snapshots=snapshots,
        )
        self._entries: dict[str, DeployedAgent] = {}
        self._reserved: set[str] = set()
        self._locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(
            asyncio.Lock
        )
        self._counts = collections.Counter[str]()
        self._operations = Operations()
        self._writer = StateWriter(storage, runtime, self._entries, COUNTER_FLUSH_INTERVAL, dirty)
        self._closed = False
        self._writer.start()

    # -- helpers -----------------------------------------------------------------------------

    @property
    def agents_dir(self) -> Path:
        """``<data_dir>/agents``: one directory per agent that was granted one."""
        return self.config.coordination.data_dir / "agents"

    def _require(self, name: str) -> DeployedAgent:
        entry = self._entries.get(name)
        if entry is None:
            raise AgentNotFound(f"no agent named {name!r}", details={"name": name})
        return entry

    @asynccontextmanager
    async def _locked(self, name: str) -> AsyncIterator[DeployedAgent]:
        if self._closed:
            raise Error("the agent service is closed")
        async with self._locks[name]:
            yield self._require(name)

    async def _persist(self, entry: DeployedAgent) -> None:
        await self._writer.write([entry.name])

    # -- lifecycle ---------------------------------------------------------------------------

    async def deploy(self, req: DeployRequest) -> AgentInfo:
        """Validate, store and start a new agent; returns it running.

        Raises, in this order of checks: `InvalidRequest` (name, env, limits),
        `AgentAlreadyExists`, `AgentLimitReached`, `ModuleTooLarge` / `InvalidWasm`,
        `AgentStartFailed` (``caxton_init`` failed; the details carry its log lines, and
        nothing of the agent is left behind).
        """
        if self._closed:
            raise Error("the agent service is closed")
        name = check_name(req.name)
        env = check_env(req.env)
        rt = self.config.runtime
        check_limits(
            req.memory_limit,
            req.fuel,
            max_memory=rt.wasm_memory_limit,
            fuel_enabled=self.engine.fuel_enabled,
        )
        if name in self._entries or name in self._reserved:
            raise AgentAlreadyExists(
                f"an agent named {name!r} already exists; to run new code under that name, "
                f"upgrade it (caxton agent upgrade {name} FILE, or PUT /api/v1/agents/{name}), "
                "or deploy under another name",
                details={"name": name},
            )
        elsewhere = self.hosted_elsewhere(name)
        if elsewhere is not None:
            raise AgentAlreadyExists(
                f"an agent named {name!r} already exists on node {elsewhere!r}; to run new "
                f"code under that name, upgrade it (from any node), or deploy under another "
                "name",
                details={"name": name, "node": elsewhere},
            )
        if len(self._entries) + len(self._reserved) >= rt.max_agents:
            raise AgentLimitReached(
                f"{rt.max_agents} agents are deployed already (runtime.max_agents)",
                details={"max_agents": rt.max_agents},
            )
        self._reserved.add(name)
        return await self._operations.run(
            f"deploy of {name!r}", self._deploy_reserved(req, name, env)
        )

    async def _deploy_reserved(
        self, req: DeployRequest, name: str, env: dict[str, str]
    ) -> AgentInfo:
        try:
            entry = await self._deploy(req, name, env)
        except BaseException:
            self._counts["deploy_failures"] += 1
            raise
        finally:
            self._reserved.discard(name)
        self._counts["deploys"] += 1
        self.changes.notify(name)
        return self._info(entry)

    async def _deploy(self, req: DeployRequest, name: str, env: dict[str, str]) -> DeployedAgent:
        data_dir = self.agents_dir / name / "data" if req.grant_dir else None
        spec = AgentSpec(
            name=name, env=env, memory_limit=req.memory_limit, fuel=req.fuel, grant_dir=data_dir
        )
        compiled = await self._compiler.compile(req.wasm, spec)
        if data_dir is not None:
            await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
        record = AgentRecord(
            name=name,
            state=AgentState.RUNNING.value,
            env=env,
            limits={"memory_bytes": req.memory_limit, "fuel": req.fuel},
            grants={"data_dir": None if data_dir is None else str(data_dir)},
        )
        try:
            stored = await self.storage.agents.create(record, req.wasm)
            try:
                await self.runtime.start_agent(spec, compiled)
            except BaseException:
                await asyncio.shield(self.storage.agents.delete(name))
                raise
        except BaseException:
            if data_dir is not None:
                await asyncio.to_thread(shutil.rmtree, data_dir.parent, True)
            raise
        entry = DeployedAgent(
            spec=spec,
            compiled=compiled,
            versions=[1],
            module_sha256=compiled.module.sha256,
            module_size=len(req.wasm),
            created_at=stored.created_at,
            updated_at=stored.updated_at,
            persisted=(AgentState.RUNNING.value, 0, 0, 0, None),
        )
        self._entries[name] = entry
        return entry

    async def upgrade(self, name: str, wasm: bytes) -> AgentInfo:
        """Run ``wasm`` as the agent's next version; the message being handled finishes first.

        A module that fails validation (`InvalidWasm`) or to start (`AgentStartFailed`) is not
        stored, and the old version stays current and running.
        """
        return await self._operations.run(f"upgrade of {name!r}", self._upgrade(name, wasm))

    async def _upgrade(self, name: str, wasm: bytes) -> AgentInfo:
        async with self._locked(name) as entry:
            await self._versions.upgrade(entry, wasm)
            await self._persist(entry)
        self._counts["upgrades"] += 1
        self.changes.notify(name)
        return self._info(entry)

    async def rollback(self, name: str, version: int) -> AgentInfo:
        """Make an older (or newer) stored version current, with `upgrade`'s semantics.

        Raises `AgentNotFound` if the agent has no such version.
        """
        return await self._operations.run(f"rollback of {name!r}", self._rollback(name, version))

    async def _rollback(self, name: str, version: int) -> AgentInfo:
        async with self._locked(name) as entry:
            if await self._versions.roll_to(entry, version):
                self._counts["rollbacks"] += 1
        self.changes.notify(name)
        return self._info(entry)

    async def stop(self, name: str) -> AgentInfo:
        """Stop the agent after its current message; queued messages wait for `start`."""
        return await self._operations.run(f"stop of {name!r}", self._stop(name))

    async def _stop(self, name: str) -> AgentInfo:
        async with self._locked(name) as entry:
            await self.runtime.stop_agent(name)
            await self._persist(entry)
        self.changes.notify(name)
        return self._info(entry)

    async def start(self, name: str) -> AgentInfo:
        """Start a stopped or failed agent with a fresh instance (no-op if it runs).

        Raises `AgentStartFailed` (state unchanged) if ``caxton_init`` fails.
        """
        return await self._operations.run(f"start of {name!r}", self._start(name))

    async def _start(self, name: str) -> AgentInfo:
        async with self._locked(name) as entry:
            state = self.runtime.agent_statistics(name).state
            if state not in (AgentState.RUNNING, AgentState.HIBERNATED):
                await self.runtime.start_agent(entry.spec, entry.compiled)
                await self._persist(entry)
        self.changes.notify(name)
        return self._info(entry)

    async def remove(self, name: str) -> None:
        """Remove the agent: its instance, record, versions, kv, snapshot, timers, directory."""
        await self._operations.run(f"removal of {name!r}", self._remove(name))

    async def _remove(self, name: str) -> None:
        async with self._locked(name) as entry:
            with suppress(AgentNotFound):
                await self.runtime.remove_agent(name)
            # Its queued messages have pending rows once the journal is flushed; deleting
            # the agent turns them into dead letters (never delivered to a later namesake).
            await self.runtime.flush_journal()
            await self.storage.agents.delete(name)
            del self._entries[name]
            if entry.spec.grant_dir is not None:
                await asyncio.to_thread(shutil.rmtree, self.agents_dir / name, True)
        self._locks.pop(name, None)
        self._counts["removals"] += 1
        self.changes.notify(name)

    # -- queries -----------------------------------------------------------------------------

    async def get(self, name: str) -> AgentInfo:
        """One agent (`AgentNotFound` if there is none)."""
        return self._info(self._require(name))

    async def list(self, *, offset: int = 0, limit: int = 100) -> tuple[list[AgentInfo], int]:
        """A page of agents ordered by name, and how many there are in all."""
        names = sorted(self._entries)
        page = names[max(0, offset) : max(0, offset) + max(0, limit)]
        return [self._info(self._entries[n]) for n in page], len(names)

    def logs(self, name: str, n: int = 100) -> builtins.list[LogLine]:
        """The agent's last ``n`` log lines, oldest first."""
        self._require(name)
        return self.runtime.recent_logs(name, n)

    def names(self) -> builtins.list[str]:
        """Every deployed agent's name, sorted."""
        return sorted(self._entries)

    def hosts(self, name: str) -> bool:
        """Whether this node hosts ``name`` (a dict lookup)."""
        return name in self._entries

    def summary(self, name: str) -> AgentSummary | None:
        """What the cluster's registry lists of ``name`` (None: not deployed here)."""
        entry = self._entries.get(name)
        if entry is None:
            return None
        try:
            state = self.runtime.agent_statistics(name).state.value
        except AgentNotFound:
            return None
        return AgentSummary(name, state, entry.spec.version, entry.created_at, entry.updated_at)

    def _info(self, entry: DeployedAgent) -> AgentInfo:
        stats = self.runtime.agent_statistics(entry.name)
        state, messages, failures, restarts, last_error = entry.current(stats)
        last_active = None
        if stats.last_active is not None:
            clock = self.runtime.clock
            last_active = clock.wall() - (clock.monotonic() - stats.last_active)
        spec = entry.spec
        return AgentInfo(
            name=entry.name,
            state=state,
            kind=stats.kind,
            version=spec.version,
            versions=tuple(entry.versions),
            module_sha256=entry.module_sha256,
            module_size=entry.module_size,
            env=dict(spec.env),
            memory_limit=stats.memory_limit,
            fuel=spec.fuel,
            execution_timeout=self.config.runtime.execution_timeout,
            mailbox_capacity=stats.mailbox_capacity,
            data_dir=None if spec.grant_dir is None else str(spec.grant_dir),
            created_at=entry.created_at,
            updated_at=entry.updated_at,
            messages_handled=messages,
            failures=failures,
            restarts=restarts,
            last_error=last_error,
            memory_bytes=stats.memory_bytes,
            mailbox_depth=stats.mailbox_depth,
            last_active=last_active,
            unsaved_state=entry.compiled.info.unsaved_state,
        )

    # -- node start and stop -----------------------------------------------------------------

    async def restore_all(self) -> int:
        """Bring back every stored agent in its stored state; returns how many came back."""
        return await self._restorer.restore_all(self._entries)

    async def flush(self) -> int:
        """Write every agent's changed state and counters now; returns how many were written."""
        return await self._writer.write(list(self._entries))

    async def aclose(self) -> None:
        """Stop the background writer and write what changed (the runtime is not closed)."""
        if self._closed:
            return
        self._closed = True
        # An operation whose runtime call cannot finish any more is cancelled after the budget.
        await self._operations.aclose(self.config.runtime.agent_shutdown_timeout + 1.0)
        await self._writer.aclose()
        await self.flush()

    # -- statistics --------------------------------------------------------------------------

    def statistics(self) -> AgentServiceStatistics:
        """Agents by state and lifecycle operations since the node started."""
        by_state = collections.Counter[str]()
        for name in self._entries:
            try:
                by_state[self.runtime.agent_statistics(name).state.value] += 1
            except AgentNotFound:
                continue
        return AgentServiceStatistics(
            agents=len(self._entries),
            by_state=dict(by_state),
            deploys=self._counts["deploys"],
            deploy_failures=self._counts["deploy_failures"],
            upgrades=self._counts["upgrades"],
            rollbacks=self._counts["rollbacks"],
            removals=self._counts["removals"],
        )

    def metric_samples(self) -> Iterator[Sequence[Any]]:
        """Metric records for ``observability.SnapshotCollector`` (plain tuples)."""
        return metric_samples(self.statistics(), self.runtime.statistics())
