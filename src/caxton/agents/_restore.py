"""Node start: every stored agent comes back in its stored state, then pending timers re-arm.

* ``running`` (and ``loaded``, a deploy cut short by a crash): started with a fresh instance;
  if ``caxton_init`` fails now, the agent comes back ``failed`` with the reason as last error.
* ``stopped`` / ``failed``: registered without an instance; `AgentService.start` starts them.
* ``hibernated``: registered with its snapshot kept in the store; the next message restores
  its linear memory (a counter kept there keeps counting).

Modules come from the compiled-module cache on disk, so nothing is recompiled. Timers still
pending are re-armed with what is left of their delay (those due already fire at once); each is
stored again under a new row before its old row is deleted, so a crash in between delivers it
twice rather than never.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from caxton.agents._compiler import ModuleCompiler
from caxton.agents._registry import DeployedAgent
from caxton.agents.stored import StoredTimers
from caxton.errors import AgentStartFailed, Error
from caxton.runtime import AgentSpec, AgentState, Engine, Runtime
from caxton.storage import AgentRecord, Storage

__all__ = ["KnownSnapshots", "Restorer"]

log = logging.getLogger("caxton.agents")

#: Agents restored concurrently.
CONCURRENCY = 32
_PAGE = 1000
_IDLE = {"stopped": AgentState.STOPPED, "failed": AgentState.FAILED}


class KnownSnapshots(Protocol):
    """Told which agents have a memory snapshot in the store (the runtime's snapshot backend
    over SQLite skips the lookup for agents it was not told about)."""

    def mark(self, agent: str) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Restorer:
    """Brings the stored agents back at node start (see the module docstring)."""

    storage: Storage
    runtime: Runtime
    engine: Engine
    compiler: ModuleCompiler
    snapshots: KnownSnapshots

    async def restore_all(self, entries: dict[str, DeployedAgent]) -> int:
        """Restore every stored agent into ``entries`` and the runtime; re-arm timers."""
        records: list[AgentRecord] = []
        while True:
            page = await self.storage.agents.page(offset=len(records), limit=_PAGE)
            records.extend(page)
            if len(page) < _PAGE:
                break
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(record: AgentRecord) -> bool:
            async with gate:
                try:
                    entry = await self._restore_one(record)
                except Error as exc:
                    log.error("agent %s could not be restored: %s", record.name, exc.message)
                    return False
                entries[record.name] = entry
                return True

        restored = sum(await asyncio.gather(*(one(r) for r in records)))
        await self._rearm_timers()
        return restored

    async def _restore_one(self, record: AgentRecord) -> DeployedAgent:
        storage, runtime, name = self.storage, self.runtime, record.name
        version, digest, wasm = await storage.agents.load_module_for(name)
        versions = [v.version for v in await storage.agents.versions(name)]
        data_dir = record.grants.get("data_dir")
        spec = AgentSpec(
            name=name,
            version=version,
            env=dict(record.env),
            memory_limit=record.limits.get("memory_bytes"),
            fuel=record.limits.get("fuel"),
            grant_dir=None if data_dir is None else Path(data_dir),
        )
        if spec.grant_dir is not None:
            await asyncio.to_thread(spec.grant_dir.mkdir, parents=True, exist_ok=True)
            # Counted now, even if the agent stays hibernated until its next message.
            await asyncio.to_thread(self.engine.temp_storage.add, spec.grant_dir)
        compiled = await self.compiler.compile(wasm, spec)
        entry = DeployedAgent(
            spec=spec,
            compiled=compiled,
            versions=versions,
            module_sha256=digest,
            module_size=len(wasm),
            created_at=record.created_at,
            updated_at=record.updated_at,
            base_messages=record.messages_handled,
            base_failures=record.failures,
            base_restarts=record.restarts,
            base_last_error=record.last_error,
            persisted=(
                record.state,
                record.messages_handled,
                record.failures,
                record.restarts,
                record.last_error,
            ),
        )
        state = record.state
        if state == AgentState.HIBERNATED.value and compiled.info.kind == "reactor":
            self.snapshots.mark(name)
            await runtime.load_agent(spec, compiled, AgentState.HIBERNATED)
        elif state in _IDLE:
            await runtime.load_agent(spec, compiled, _IDLE[state])
        else:
            try:
                await runtime.start_agent(spec, compiled)
            except AgentStartFailed as exc:
                log.error("agent %s failed to start again: %s", name, exc.message)
                entry.base_last_error = exc.message
                await runtime.load_agent(spec, compiled, AgentState.FAILED)
        return entry

    async def _rearm_timers(self) -> None:
        storage, runtime = self.storage, self.runtime
        now = time.time()
        for record in await storage.scheduled.list_all():
            receiver, data, wait = StoredTimers.decode(record, now)
            runtime.schedule(wait, receiver, data, record.name)
            storage.scheduled.delete_nowait(record.id)
