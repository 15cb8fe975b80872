"""A real composition for messaging tests: SQLite storage, wasmtime runtime, `Messaging`.

`Stack` wires them the way the node does (``Messaging(..., runtime=lambda delivery:
Runtime(..., delivery=delivery, events=delivery))``) with a kv backend over the same SQLite
store, and deploys agents from the committed examples, WAT fixtures or C sources built here with
clang.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from caxton.config.schema import Config, RuntimeConfig
from caxton.messaging import Messaging, MessagingOptions
from caxton.runtime import AgentSpec, Engine, Runtime
from caxton.storage import AgentRecord, Storage
from tests.support import EXAMPLES, SDK, example, fast_runtime, wat

HERE = Path(__file__).resolve().parent

FAST = fast_runtime(agent_startup_timeout=1.0)
OPTIONS = MessagingOptions(submit_wait=0.2, flush_interval=0.002, prune_interval=3600.0)


class StorageKv:
    """The runtime's `KvBackend` over the SQLite store (the node has its own)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, agent: str, key: bytes) -> bytes | None:
        return self.storage.kv.get_sync(agent, key)

    def usage(self, agent: str) -> tuple[int, int]:
        return self.storage.kv.usage_sync(agent)

    def set(self, agent: str, key: bytes, value: bytes) -> None:
        self.storage.kv.set_nowait(agent, key, value)

    def delete(self, agent: str, key: bytes) -> None:
        self.storage.kv.delete_nowait(agent, key)

    def drop(self, agent: str) -> None:
        future: Future[int] = self.storage.kv.clear_nowait(agent)
        del future


def module(name: str) -> bytes:
    """An agent module: an example (``echo``), a WAT fixture (``wat:fail``) or a test C agent."""
    if name.startswith("wat:"):
        return wat(name[4:])
    if (EXAMPLES / f"{name}.wasm").exists():
        return example(name)
    return build_c(HERE / "agents" / f"{name}.c")


def build_c(source: Path) -> bytes:
    """Compile a reactor agent with clang and the C SDK (cached next to the test run)."""
    out = Path("/tmp") / f"caxton-test-{source.stem}-{source.stat().st_mtime_ns}.wasm"
    if not out.exists():
        if shutil.which("clang") is None:
            pytest.skip("clang is not installed")
        subprocess.run(
            [
                "clang",
                "--target=wasm32-wasi",
                "-O2",
                "-mexec-model=reactor",
                "-Wl,--strip-all",
                "-I",
                str(SDK),
                "-o",
                str(out),
                str(source),
            ],
            check=True,
        )
    return out.read_bytes()


class Stack:
    """Storage + Engine + Runtime + Messaging, started and closed together."""

    def __init__(
        self, path: Path, config: RuntimeConfig = FAST, options: MessagingOptions = OPTIONS
    ):
        self.path = path
        self.config = config
        self.options = options

    async def __aenter__(self) -> Stack:
        self.storage = await Storage.open(self.path)
        self.engine = Engine(self.config, cache_dir=None)
        self.messaging = Messaging(
            Config(runtime=self.config),
            self.storage,
            options=self.options,
            runtime=lambda delivery: Runtime(
                self.config,
                engine=self.engine,
                kv=StorageKv(self.storage),
                delivery=delivery,
                events=delivery,
            ),
        )
        self.runtime = self.messaging.runtime
        await self.runtime.start()
        await self.messaging.start()
        return self

    async def deploy(self, name: str, source: str | None = None, **spec: Any) -> None:
        if await self.storage.agents.get(name) is None:
            await self.storage.agents.create(AgentRecord(name=name), b"\0asm\x01\0\0\0")
        compiled = await asyncio.to_thread(self.engine.compile, module(source or name))
        await self.runtime.start_agent(AgentSpec(name=name, **spec), compiled)

    async def __aexit__(self, *exc: object) -> None:
        await self.runtime.aclose()
        await self.messaging.aclose()
        await self.storage.aclose()
        self.engine.close()


@pytest.fixture
async def stack(data_dir: Path) -> AsyncIterator[Stack]:
    async with Stack(data_dir / "local.db") as s:
        yield s
