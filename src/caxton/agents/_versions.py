"""Which version of its module an agent runs: `Versions.upgrade` and `Versions.roll_to`.

Both follow one rule: the module is compiled and swapped into the running agent first (the
message being handled finishes on the old one), and the store is told after; if the store
fails, the runtime goes back to the old module, so the agent runs the version the store calls
current. A module that fails validation or to start is never stored. The caller holds the
agent's lock and writes the record afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from caxton.agents._compiler import ModuleCompiler
from caxton.agents._registry import DeployedAgent
from caxton.errors import AgentNotFound
from caxton.runtime import Compiled, Runtime
from caxton.storage import AgentsRepository

__all__ = ["Versions"]

T = TypeVar("T")


class Versions:
    """Swaps the module of a deployed agent; runtime, store and `DeployedAgent` agree after."""

    def __init__(
        self, *, agents: AgentsRepository, runtime: Runtime, compiler: ModuleCompiler
    ) -> None:
        self._agents = agents
        self._runtime = runtime
        self._compiler = compiler

    async def upgrade(self, entry: DeployedAgent, wasm: bytes) -> None:
        """Run ``wasm`` as the agent's next version and store it (`InvalidWasm`,
        `AgentStartFailed`: nothing changed)."""
        compiled = await self._compiler.compile(wasm, entry.spec)
        name = entry.name
        stored = await self._swap(
            entry,
            compiled,
            max(entry.versions) + 1,
            lambda: self._agents.add_version(name, wasm),
        )
        entry.replace_spec(version=stored)
        entry.compiled, entry.versions = compiled, [*entry.versions, stored]
        entry.module_sha256, entry.module_size = compiled.module.sha256, len(wasm)
        entry.updated_at = time.time()

    async def roll_to(self, entry: DeployedAgent, version: int) -> bool:
        """Run the stored ``version`` and make it current; False if it is current already.

        Raises `AgentNotFound` if the agent has no such version.
        """
        name = entry.name
        if version not in entry.versions:
            raise AgentNotFound(
                f"agent {name!r} has no version {version} (it has {entry.versions})",
                details={"name": name, "version": version, "versions": entry.versions},
            )
        if version == entry.spec.version:
            return False
        _, digest, wasm = await self._agents.load_module_for(name, version)
        compiled = await self._compiler.compile(wasm, entry.spec)
        await self._swap(
            entry,
            compiled,
            version,
            lambda: self._agents.set_current_version(name, version),
        )
        entry.replace_spec(version=version)
        entry.compiled, entry.module_sha256, entry.module_size = compiled, digest, len(wasm)
        entry.updated_at = time.time()
        return True

    async def _swap(
        self,
        entry: DeployedAgent,
        compiled: Compiled,
        version: int,
        store: Callable[[], Awaitable[T]],
    ) -> T:
        """Run ``compiled`` as ``version``, then ``store``; if that fails, run the old module."""
        await self._runtime.upgrade_agent(entry.name, compiled, version)
        try:
            return await store()
        except BaseException:
            await self._runtime.upgrade_agent(entry.name, entry.compiled, entry.spec.version)
            raise
