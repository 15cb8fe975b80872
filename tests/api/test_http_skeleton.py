"""The HTTP skeleton: error envelope, limits, health/ready, OpenAPI."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from caxton.api.app import create_app
from caxton.api.errors import read_json
from caxton.config import Config, CoordinationConfig, NetworkingConfig
from caxton.node import Node


def _config(tmp_path: Path, **networking: Any) -> Config:
    return Config(
        coordination=CoordinationConfig(local_state_path=tmp_path / "local.db"),
        networking=dataclasses.replace(NetworkingConfig(), **networking),
    )


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    node = Node(_config(tmp_path, request_timeout=0.2, max_request_size=1024))
    await node.start()
    yield node
    await node.aclose()


async def _client(app: web.Application) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


def _assert_envelope(body: dict[str, Any], code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def test_unknown_path_is_a_404_envelope(node: Node) -> None:
    client = await _client(create_app(node))
    try:
        resp = await client.get("/no/such/thing")
        assert resp.status == 404
        body = await resp.json()
        _assert_envelope(body, "NOT_FOUND")
        assert "/no/such/thing" in body["error"]["message"]
    finally:
        await client.close()


async def test_wrong_method_is_a_405_envelope_with_allow(node: Node) -> None:
    client = await _client(create_app(node))
    try:
        resp = await client.delete("/health")
        assert resp.status == 405
        body = await resp.json()
        _assert_envelope(body, "METHOD_NOT_ALLOWED")
        assert "GET" in body["error"]["details"]["allowed_methods"]
        assert "GET" in resp.headers["Allow"]
    finally:
        await client.close()


async def _app_with_echo(node: Node) -> web.Application:
    app = create_app(node)

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(await read_json(request))

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)  # longer than the request timeout, which answers first
        return web.json_response({})

    app.router.add_post("/test/echo", echo)
    app.router.add_get("/test/slow", slow)
    return app


async def test_body_that_is_not_json_is_invalid_request(node: Node) -> None:
    client = await _client(await _app_with_echo(node))
    try:
        resp = await client.post(
            "/test/echo", data=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert resp.status == 400
        _assert_envelope(await resp.json(), "INVALID_REQUEST")
        ok = await client.post("/test/echo", json={"a": 1})
        assert ok.status == 200
        assert await ok.json() == {"a": 1}
    finally:
        await client.close()


async def test_body_above_the_limit_is_413(node: Node) -> None:
    client = await _client(await _app_with_echo(node))
    try:
        resp = await client.post("/test/echo", data=b"[" + b"1," * 2000 + b"1]")
        assert resp.status == 413
        body = await resp.json()
        _assert_envelope(body, "PAYLOAD_TOO_LARGE")
        assert body["error"]["details"]["max_bytes"] == 1024
    finally:
        await client.close()


async def test_request_timeout_answers_503(node: Node) -> None:
    client = await _client(await _app_with_echo(node))
    try:
        resp = await client.get("/test/slow")
        assert resp.status == 503
        _assert_envelope(await resp.json(), "UNAVAILABLE")
    finally:
        await client.close()


async def test_ready_is_503_until_started_and_after_drain(tmp_path: Path) -> None:
    node = Node(_config(tmp_path))
    client = await _client(create_app(node))
    try:
        assert (await client.get("/health")).status == 200
        resp = await client.get("/ready")
        assert resp.status == 503
        _assert_envelope(await resp.json(), "UNAVAILABLE")
        await node.start()
        resp = await client.get("/ready")
        assert resp.status == 200
        checks = (await resp.json())["checks"]
        assert checks["storage"] is True
        assert checks["started"] is True
        assert all(checks.values())
        node.begin_drain()
        assert (await client.get("/ready")).status == 503
    finally:
        await client.close()
        await node.aclose()


async def test_openapi_describes_every_route(node: Node) -> None:
    app = create_app(node)
    client = await _client(app)
    try:
        doc = await (await client.get("/api/v1/openapi.json")).json()
        assert doc["openapi"].startswith("3.")
        documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
        served = {
            (r.method, r.resource.canonical)
            for r in app.router.routes()
            if r.method != "HEAD" and r.resource is not None
        }
        assert served == documented
    finally:
        await client.close()
