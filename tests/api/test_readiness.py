"""Work that arrives before the node has started gets 503 and Retry-After."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from caxton.api.app import create_app
from caxton.config import Config, CoordinationConfig
from caxton.node import Node

MESSAGE = {"receiver": "echo", "performative": "request", "content": 1}


async def _unavailable(client: TestClient[Any, Any], method: str, path: str, **kw: Any) -> str:
    resp = await client.request(method, path, **kw)
    assert resp.status == 503, await resp.text()
    assert resp.headers["Retry-After"] == "1"
    error = (await resp.json())["error"]
    assert error["code"] == "UNAVAILABLE"
    message: str = error["message"]
    return message


async def test_503_before_start_and_a_draining_node_still_serves(tmp_path: Path) -> None:
    node = Node(Config(coordination=CoordinationConfig(local_state_path=tmp_path / "local.db")))
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(node)))
    await client.start_server()
    try:
        # A load balancer checking /health may already send traffic: tell it to retry.
        assert (await client.get("/health")).status == 200
        assert (await client.get("/ready")).status == 503
        assert (await client.get("/api/v1/openapi.json")).status == 200
        message = await _unavailable(client, "GET", "/api/v1/agents")
        assert "starting" in message
        await _unavailable(client, "POST", "/api/v1/messages", json=MESSAGE)

        await node.start()
        assert (await client.get("/ready")).status == 200
        assert (await client.get("/api/v1/agents")).status == 200

        # Draining: balancers are told by /ready; what still reaches the node is served.
        node.begin_drain()
        assert (await client.get("/ready")).status == 503
        assert (await client.get("/api/v1/agents")).status == 200
        assert (await client.get("/health")).status == 200

        await node.aclose()
        assert "closed" in await _unavailable(client, "GET", "/api/v1/agents")
    finally:
        await client.close()
        await node.aclose()
