"""Fixtures for agent service tests: a real node (SQLite, wasmtime) on a temporary directory."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from caxton.config import Config, CoordinationConfig, RuntimeConfig
from caxton.node import Node

ROOT = Path(__file__).resolve().parents[2]
WAT = ROOT / "tests" / "fixtures" / "wat"
EXAMPLES = ROOT / "examples" / "agents"

FAST = RuntimeConfig(
    max_concurrent_executions=2,
    execution_timeout=0.5,
    agent_startup_timeout=0.5,
    agent_shutdown_timeout=2.0,
    wasm_memory_limit=8 * 1024 * 1024,
    mailbox_capacity=64,
    gc_interval=3600.0,
)


def wat(name: str) -> bytes:
    """A WAT fixture compiled to binary."""
    return bytes(wasmtime.wat2wasm((WAT / f"{name}.wat").read_text()))


def example(name: str) -> bytes:
    """A committed example agent."""
    return (EXAMPLES / f"{name}.wasm").read_bytes()


def message(receiver: str, content: Any = None, **fields: Any) -> bytes:
    """A request from the test client ("client") to ``receiver``."""
    body = {"receiver": receiver, "sender": "client", "performative": "request"}
    body["content"] = content
    body.update(fields)
    return json.dumps(body).encode()


def node_config(data_dir: Path, **runtime: Any) -> Config:
    """A node on ``data_dir`` with fast runtime settings."""
    import dataclasses

    return Config(
        runtime=dataclasses.replace(FAST, **runtime),
        coordination=CoordinationConfig(local_state_path=data_dir / "local.db"),
    )


class Client:
    """Collects what agents send to non-agents (through ``node.on_external_message``)."""

    def __init__(self) -> None:
        self.outbox: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    def attach(self, node: Node) -> Node:
        node.on_external_message = self.external
        return node

    def external(self, receiver: str, data: bytes) -> None:
        self.outbox.put_nowait((receiver, json.loads(data)))

    async def reply(self, within: float = 5.0) -> dict[str, Any]:
        _, body = await asyncio.wait_for(self.outbox.get(), within)
        return body

    async def ask(self, node: Node, name: str, content: Any = None) -> Any:
        """Send one request to ``name`` and return the content of the reply."""
        await node.runtime.deliver(name, message(name, content))
        return (await self.reply())["content"]


StartNode = Callable[..., Awaitable[Node]]


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Poll ``check`` until it is true (`TimeoutError` after ``within`` seconds)."""
    async with asyncio.timeout(within):
        for delay in itertools.repeat(0.01):
            if await check():
                return
            await asyncio.sleep(delay)


@pytest.fixture
def client() -> Client:
    return Client()


@pytest.fixture
async def start_node(data_dir: Path, client: Client) -> AsyncIterator[StartNode]:
    """``await start_node(**runtime)`` starts a node on the test's data dir (closed after)."""
    nodes: list[Node] = []

    async def _start(**runtime: Any) -> Node:
        node = client.attach(Node(node_config(data_dir, **runtime)))
        nodes.append(node)
        await node.start()
        return node

    yield _start
    for node in nodes:
        await node.aclose()


@pytest.fixture
async def node(start_node: StartNode) -> Node:
    return await start_node()
