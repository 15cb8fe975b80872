"""Fixtures for runtime tests: a real engine, a started runtime, compiled fixture modules."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from caxton.config.schema import RuntimeConfig
from caxton.errors import AgentFailure
from caxton.runtime import AgentSpec, AgentState, Compiled, Engine, Runtime
from caxton.runtime.sandbox.accel import ACCEL
from tests.support import FAST, eventually


class Recorder:
    """Collects what the runtime hands to the loop: external messages and events."""

    def __init__(self) -> None:
        self.outbox: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.failed: asyncio.Queue[tuple[str, bytes, AgentFailure]] = asyncio.Queue()
        self.states: list[tuple[str, AgentState]] = []

    def external(self, receiver: str, data: bytes) -> None:
        self.outbox.put_nowait((receiver, json.loads(data)))

    def message_failed(self, name: str, data: bytes, error: AgentFailure) -> None:
        self.failed.put_nowait((name, data, error))

    def agent_state_changed(self, name: str, state: AgentState) -> None:
        self.states.append((name, state))

    async def reply(self, within: float = 5.0) -> dict[str, Any]:
        _, body = await asyncio.wait_for(self.outbox.get(), within)
        return body

    async def failure(self, within: float = 5.0) -> tuple[str, bytes, AgentFailure]:
        return await asyncio.wait_for(self.failed.get(), within)


@pytest.fixture
def config() -> RuntimeConfig:
    return FAST


#: Both hot paths when the C extension is built (`test_accel` checks that it is wherever a C
#: compiler is installed), else the ctypes one only.
FLAVOURS = ["c", "ctypes"] if ACCEL is not None else ["ctypes"]


@pytest.fixture(params=FLAVOURS)
def engine(config: RuntimeConfig, request: pytest.FixtureRequest) -> Iterator[Engine]:
    eng = Engine(config, cache_dir=None, accelerated=request.param == "c")
    yield eng
    eng.close()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def runtime(
    config: RuntimeConfig, engine: Engine, recorder: Recorder
) -> AsyncIterator[Runtime]:
    rt = Runtime(config, engine=engine, events=recorder, external=recorder.external)
    await rt.start()
    yield rt
    await rt.aclose()


Deploy = Callable[..., Any]


@pytest.fixture
def deploy(runtime: Runtime, engine: Engine) -> Deploy:
    """``await deploy(name, wasm, **spec)`` compiles (off the loop) and starts an agent."""

    async def _deploy(name: str, wasm: bytes, **spec: Any) -> Compiled:
        compiled = await asyncio.to_thread(engine.compile, wasm)
        await runtime.start_agent(AgentSpec(name=name, **spec), compiled)
        return compiled

    return _deploy


async def taken(runtime: Runtime, name: str) -> None:
    """Wait until a worker has taken ``name``'s queued messages: it runs the last one (a
    ``spin`` agent then holds its worker until the execution deadline)."""

    async def empty() -> bool:
        return runtime.agent_statistics(name).mailbox_depth == 0

    await eventually(empty, what=f"a worker took {name}'s messages")
