"""Deploy and upgrade are atomic whatever happens to the request.

A real node behind the real app with a tiny ``request_timeout`` and agents whose ``caxton_init``
is slow: the client gets 503, and once the operation has finished, every view (GET, list, stop,
remove, messages, a restarted node) agrees: either all of it happened, or none of it.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import wasmtime
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from caxton.api.app import create_app
from caxton.api.keys import REQUEST_TIMEOUT
from caxton.config import Config, CoordinationConfig, RuntimeConfig
from caxton.errors import AgentNotFound
from caxton.node import Node
from tests.support import eventually, wat

Client = TestClient[Any, Any]

#: The request timeout: far shorter than the slow agents' start-up.
TIMEOUT = 0.05

RUNTIME = RuntimeConfig(
    max_concurrent_executions=2,
    execution_timeout=5.0,
    agent_startup_timeout=10.0,
    agent_shutdown_timeout=2.0,
    wasm_memory_limit=8 * 1024 * 1024,
    gc_interval=3600.0,
)

# caxton_init spins ~1.6e9 iterations (about 0.3-1 s), then succeeds (0) or fails (1).
_SLOW_INIT = """
(module
  (memory (export "memory") 1)
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0))
  (func (export "caxton_init") (result i32)
    (local $i i32)
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $spin (i32.lt_u (local.get $i) (i32.const 0x60000000))))
    (i32.const RESULT)))
"""


def slow_init(result: int) -> bytes:
    return bytes(wasmtime.wat2wasm(_SLOW_INIT.replace("RESULT", str(result))))


@dataclasses.dataclass
class Opened:
    """A node with two apps: ``impatient`` (``request_timeout`` = `TIMEOUT`) for the operation
    under test, ``client`` (the default timeout) for everything that checks what happened."""

    node: Node
    impatient: Client
    client: Client

    async def aclose(self) -> None:
        await self.impatient.close()
        await self.client.close()
        await self.node.aclose()


OpenNode = Callable[[], Awaitable[Opened]]


async def serve(app: web.Application) -> Client:
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def open_node(tmp_path: Path) -> AsyncIterator[OpenNode]:
    """Start a node on ``tmp_path`` (again, after the last one is closed) with its apps."""
    opened: list[Opened] = []

    async def start() -> Opened:
        config = Config(
            coordination=CoordinationConfig(local_state_path=tmp_path / "local.db"),
            runtime=RUNTIME,
        )
        node = Node(config)
        await node.start()
        impatient = create_app(node)
        impatient[REQUEST_TIMEOUT] = TIMEOUT
        opened.append(Opened(node, await serve(impatient), await serve(create_app(node))))
        return opened[-1]

    yield start
    for each in reversed(opened):
        await each.aclose()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def timed_out(resp: aiohttp.ClientResponse) -> None:
    assert resp.status == 503, await resp.text()
    assert "request_timeout" in (await resp.json())["error"]["message"]


async def agent(client: Client, name: str) -> Any:
    resp = await client.get(f"/api/v1/agents/{name}")
    return await resp.json() if resp.status == 200 else None


async def at_version(client: Client, name: str, version: int) -> Any:
    found = await agent(client, name)
    return found if found is not None and found["version"] == version else None


def in_runtime(node: Node, name: str) -> bool:
    try:
        node.runtime.agent_statistics(name)
    except AgentNotFound:
        return False
    return True


async def names(client: Client) -> list[str]:
    page = await (await client.get("/api/v1/agents")).json()
    return [a["name"] for a in page["agents"]]


async def test_a_timed_out_deploy_completes_and_is_visible_everywhere(
    open_node: OpenNode,
) -> None:
    opened = await open_node()
    node, client = opened.node, opened.client
    resp = await opened.impatient.post(
        "/api/v1/agents", json={"name": "slow", "wasm": b64(slow_init(0))}
    )
    await timed_out(resp)

    found = await eventually(lambda: agent(client, "slow"), within=15)
    assert (found["state"], found["version"], found["versions"]) == ("running", 1, [1])
    assert await names(client) == ["slow"]
    resp = await client.post("/api/v1/agents", json={"name": "slow", "wasm": b64(wat("nop"))})
    assert resp.status == 409, await resp.text()

    # It takes messages, and can be stopped and removed like any agent.
    resp = await client.post(
        "/api/v1/messages", json={"receiver": "slow", "performative": "inform", "content": 1}
    )
    assert resp.status == 202, await resp.text()

    async def handled() -> Any:
        found = await agent(client, "slow")
        return found if found["counters"]["messages_handled"] == 1 else None

    await eventually(handled)
    resp = await client.post("/api/v1/agents/slow/stop")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["state"] == "stopped"
    assert (await client.delete("/api/v1/agents/slow")).status == 204
    assert await agent(client, "slow") is None
    assert not in_runtime(node, "slow")


async def test_a_timed_out_deploy_that_fails_leaves_nothing(open_node: OpenNode) -> None:
    opened = await open_node()
    node, client = opened.node, opened.client
    resp = await opened.impatient.post(
        "/api/v1/agents", json={"name": "bad", "wasm": b64(slow_init(1))}
    )
    await timed_out(resp)

    async def failed() -> bool:
        return node.agents.statistics().deploy_failures == 1

    await eventually(failed, within=15)
    assert await agent(client, "bad") is None
    assert await names(client) == []
    assert not in_runtime(node, "bad")
    assert await node.storage.agents.get("bad") is None
    resp = await client.post("/api/v1/agents", json={"name": "bad", "wasm": b64(wat("nop"))})
    assert resp.status == 201, await resp.text()


async def test_a_timed_out_upgrade_completes_and_survives_a_restart(
    open_node: OpenNode,
) -> None:
    opened = await open_node()
    client = opened.client
    resp = await client.post("/api/v1/agents", json={"name": "app", "wasm": b64(wat("nop"))})
    assert resp.status == 201, await resp.text()
    v2 = slow_init(0)
    resp = await opened.impatient.put(
        "/api/v1/agents/app", data=v2, headers={"Content-Type": "application/wasm"}
    )
    await timed_out(resp)

    found = await eventually(lambda: at_version(client, "app", 2), within=15)
    assert found["versions"] == [1, 2]
    assert found["module_sha256"] == hashlib.sha256(v2).hexdigest()
    assert found["state"] == "running"

    await opened.aclose()
    found = await agent((await open_node()).client, "app")
    assert (found["version"], found["versions"]) == (2, [1, 2])
    assert found["module_sha256"] == hashlib.sha256(v2).hexdigest()


async def test_an_upgrade_whose_client_went_away_completes(open_node: OpenNode) -> None:
    client = (await open_node()).client
    resp = await client.post("/api/v1/agents", json={"name": "app", "wasm": b64(wat("nop"))})
    assert resp.status == 201, await resp.text()
    v2 = slow_init(0)
    # The whole request is sent, then the connection is closed while the upgrade runs (the
    # test server cancels the handler of a closed connection, as handler_cancellation does).
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = (
        f"PUT /api/v1/agents/app HTTP/1.1\r\nHost: {client.host}\r\n"
        f"Content-Type: application/wasm\r\nContent-Length: {len(v2)}\r\n\r\n"
    )
    writer.write(head.encode() + v2)
    await writer.drain()
    # The handler starts the upgrade (no event marks that; v2's init spins far longer).
    await asyncio.sleep(0.1)
    writer.close()
    await writer.wait_closed()
    del reader

    found = await eventually(lambda: at_version(client, "app", 2), within=15)
    assert found["module_sha256"] == hashlib.sha256(v2).hexdigest()


async def test_a_timed_out_rollback_completes(open_node: OpenNode) -> None:
    opened = await open_node()
    client = opened.client
    v1 = slow_init(0)
    resp = await client.post("/api/v1/agents", json={"name": "app", "wasm": b64(v1)})
    assert resp.status == 201, await resp.text()
    resp = await client.put(
        "/api/v1/agents/app", data=wat("nop"), headers={"Content-Type": "application/wasm"}
    )
    assert resp.status == 200, await resp.text()
    await timed_out(await opened.impatient.put("/api/v1/agents/app?version=1"))

    found = await eventually(lambda: at_version(client, "app", 1), within=15)
    assert found["module_sha256"] == hashlib.sha256(v1).hexdigest()
    assert found["versions"] == [1, 2]
