"""Fixtures for agent service tests: a real node (SQLite, wasmtime) on a temporary directory."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from caxton.config import Config, CoordinationConfig
from caxton.node import Node
from tests.support import fast_runtime, message

#: A node's agents get a little longer than the bare runtime's tests to start and handle.
TIMEOUTS = {"execution_timeout": 0.5, "agent_startup_timeout": 0.5}


def node_config(data_dir: Path, **runtime: Any) -> Config:
    """A node on ``data_dir`` with fast runtime settings."""
    return Config(
        runtime=fast_runtime(**{**TIMEOUTS, **runtime}),
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
