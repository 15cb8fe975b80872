"""The service's in-memory view of each deployed agent, and how it is written back to SQLite.

`DeployedAgent` holds what does not change between operations (spec, compiled module, versions,
module hash and size, times) plus the counters persisted when the runtime's counters were last
zero (``base_*``). What an agent did since is in the runtime's `AgentStatistics`; the persisted
counters are always ``base + runtime``, so after a restart they continue from what was written.

`StateWriter` persists state, counters and last error: at once for the service's own
operations, soon after a runtime event marks the agent in `DirtyAgents` (state change, failed
message), and every `interval` seconds for counters, writing only records that changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from caxton.agents.stored import DirtyAgents
from caxton.errors import AgentNotFound, StorageError
from caxton.runtime import AgentSpec, AgentStatistics, Compiled, Runtime
from caxton.storage import Storage
from caxton.tasks import TaskSet

__all__ = ["DeployedAgent", "StateWriter"]

log = logging.getLogger("caxton.agents")

#: The persisted tuple: (state, messages_handled, failures, restarts, last_error).
Persisted = tuple[str, int, int, int, str | None]


@dataclass(slots=True, kw_only=True)
class DeployedAgent:
    """One deployed agent as the service knows it."""

    spec: AgentSpec
    compiled: Compiled
    versions: list[int]
    module_sha256: str
    module_size: int
    created_at: float
    updated_at: float
    base_messages: int = 0
    base_failures: int = 0
    base_restarts: int = 0
    base_last_error: str | None = None
    persisted: Persisted | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def replace_spec(self, **changes: object) -> None:
        self.spec = dataclasses.replace(self.spec, **changes)  # type: ignore[arg-type]

    def current(self, stats: AgentStatistics) -> Persisted:
        """What the store should hold for this agent given the runtime's snapshot."""
        return (
            stats.state.value,
            self.base_messages + stats.messages_handled,
            self.base_failures + stats.failures,
            self.base_restarts + stats.restarts,
            stats.last_error or self.base_last_error,
        )


class StateWriter:
    """Writes agents' state and counters to the store (see the module docstring)."""

    #: Records written concurrently in one pass (the store group-commits them).
    CHUNK = 256

    def __init__(
        self,
        storage: Storage,
        runtime: Runtime,
        entries: dict[str, DeployedAgent],
        interval: float,
        dirty: DirtyAgents,
    ) -> None:
        self._storage = storage
        self._runtime = runtime
        self._entries = entries
        self.interval = interval
        self._dirty = dirty
        self._tasks = TaskSet("agent writer", log=log)
        self._started = False

    def start(self) -> None:
        """Start the background task (owned by this writer; `aclose` ends it)."""
        if not self._started:
            self._started = True
            self._tasks.service(self._serve(), "caxton-agent-writer")

    async def _serve(self) -> None:
        next_full = time.monotonic() + self.interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_full - time.monotonic())):
                    await self._dirty.wait()
            try:
                if time.monotonic() >= next_full:
                    next_full = time.monotonic() + self.interval
                    await self.write(list(self._entries))
                else:
                    await asyncio.sleep(0.01)  # let a burst of events coalesce
                    await self.write(self._dirty.take())
            except StorageError as exc:
                # The store logs a full disk (or a deleted file) once per episode; the records
                # stay dirty and are written by a later pass.
                if self._storage.problem is None:
                    log.error("writing agent records failed: %s", exc)
            except Exception:
                log.exception("writing agent records failed")

    async def write(self, names: Iterable[str]) -> int:
        """Write the records of ``names`` that changed; returns how many were written."""
        todo: list[tuple[DeployedAgent, Persisted]] = []
        for name in names:
            entry = self._entries.get(name)
            if entry is None:
                continue
            try:
                stats = self._runtime.agent_statistics(name)
            except AgentNotFound:
                continue
            want = entry.current(stats)
            if want != entry.persisted:
                todo.append((entry, want))
        for i in range(0, len(todo), self.CHUNK):
            await asyncio.gather(*(self._write_one(e, w) for e, w in todo[i : i + self.CHUNK]))
        return len(todo)

    async def _write_one(self, entry: DeployedAgent, want: Persisted) -> None:
        state, messages, failures, restarts, last_error = want
        try:
            record = await self._storage.agents.update(
                entry.name,
                state=state,
                messages_handled=messages,
                failures=failures,
                restarts=restarts,
                last_error=last_error,
            )
        except AgentNotFound:
            return  # removed meanwhile
        entry.persisted = want
        entry.updated_at = record.updated_at

    async def aclose(self) -> None:
        """Stop the background task (call `write` afterwards for a final pass)."""
        await self._tasks.aclose()
