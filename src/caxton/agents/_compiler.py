"""`ModuleCompiler`: an agent's module validated and compiled under the agent's memory limit.

Deploys, upgrades, rollbacks and the restore at node start all compile this way: through the
engine's compiled-module cache, off the event loop, with the smaller of the node's
``runtime.wasm_memory_limit`` and the agent's own ``memory_limit``.
"""

from __future__ import annotations

import asyncio

from caxton.runtime import AgentSpec, Compiled, Engine

__all__ = ["ModuleCompiler"]


class ModuleCompiler:
    """Compiles agents' modules with ``engine`` under ``memory_limit`` (bytes) at most."""

    def __init__(self, engine: Engine, memory_limit: int) -> None:
        self._engine = engine
        self._memory_limit = memory_limit

    async def compile(self, wasm: bytes, spec: AgentSpec) -> Compiled:
        """Validate and compile ``wasm`` for the agent ``spec`` describes (in a worker thread).

        Raises `InvalidWasm` / `ModuleTooLarge` as `Engine.compile` does.
        """
        limit = self._memory_limit
        if spec.memory_limit is not None:
            limit = min(limit, spec.memory_limit)
        return await asyncio.to_thread(self._engine.compile, wasm, memory_limit=limit)
