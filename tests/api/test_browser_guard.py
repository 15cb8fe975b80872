"""A web page in the operator's browser cannot drive the API (attack M5): cross-site Origins,
form content types and DNS-rebinding Host names are refused, on a real node with real agents;
the CLI's kind of request (no Origin, JSON, Host 127.0.0.1) is not affected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from caxton.config import Config, CoordinationConfig, Secret, SecurityConfig
from caxton.node import Node
from caxton.security import TokenIssuer
from tests.api.clients import api_client
from tests.support import example

Client = TestClient[Any, Any]
SECRET = "a-browser-guard-test-secret-0123456789"
MESSAGE = {"receiver": "nobody", "performative": "inform", "content": "hi"}
EVIL = "https://evil.example"


def serve(tmp_path: Path, **security: Any) -> AbstractAsyncContextManager[Client]:
    return api_client(tmp_path, **security)


@pytest.fixture
async def open_node(tmp_path: Path) -> AsyncIterator[Client]:
    """Authentication off: the embedded default."""
    async with serve(tmp_path) as client:
        yield client


async def refused(resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body["error"]) == {"code", "message", "details"}
    error: dict[str, Any] = body["error"]
    return error


async def agent_names(client: Client) -> list[str]:
    resp = await client.get("/api/v1/agents")
    assert resp.status == 200
    return [a["name"] for a in (await resp.json())["agents"]]


async def test_a_cross_site_page_cannot_deploy_or_send(open_node: Client) -> None:
    form = aiohttp.FormData()
    form.add_field("name", "planted")
    form.add_field("wasm", example("echo"), filename="a.wasm", content_type="application/wasm")
    error = await refused(
        await open_node.post("/api/v1/agents", data=form, headers={"Origin": EVIL}), 403
    )
    assert error["code"] == "FORBIDDEN"
    assert "cors_origins" in error["message"]
    assert error["details"] == {"origin": EVIL}
    raw = await open_node.post(
        "/api/v1/agents?name=planted",
        data=example("echo"),
        headers={"Origin": EVIL, "Content-Type": "application/wasm"},
    )
    await refused(raw, 403)
    assert await agent_names(open_node) == []

    for origin in (EVIL, "null", "http://localhost.evil.example"):
        resp = await open_node.post("/api/v1/messages", json=MESSAGE, headers={"Origin": origin})
        assert (await refused(resp, 403))["code"] == "FORBIDDEN"
    letters = await (await open_node.get("/api/v1/dead-letters")).json()
    assert letters["total"] == 0  # nothing was accepted

    # Reading is not state-changing (and the browser hides the answer from the page anyway).
    assert (await open_node.get("/api/v1/agents", headers={"Origin": EVIL})).status == 200


async def test_loopback_pages_and_programs_may_use_an_open_node(open_node: Client) -> None:
    for origin in ("http://localhost:3000", "http://127.0.0.1:8000", "http://[::1]:5173"):
        resp = await open_node.post("/api/v1/messages", json=MESSAGE, headers={"Origin": origin})
        assert resp.status == 202, await resp.text()
    # The CLI and curl send no Origin.
    assert (await open_node.post("/api/v1/messages", json=MESSAGE)).status == 202


async def test_form_content_types_are_415_on_json_routes(open_node: Client) -> None:
    for ctype in (
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ):
        resp = await open_node.post(
            "/api/v1/messages",
            data=b'{"receiver": "nobody", "performative": "inform"}',
            headers={"Content-Type": ctype},
        )
        error = await refused(resp, 415)
        assert error["code"] == "INVALID_REQUEST"
        assert "application/json" in error["message"]
    stop = await open_node.post(
        "/api/v1/agents/echo/stop", data=b"x=1", headers={"Content-Type": "text/plain"}
    )
    assert (await refused(stop, 415))["code"] == "INVALID_REQUEST"
    letters = await (await open_node.get("/api/v1/dead-letters")).json()
    assert letters["total"] == 0

    # Deploy takes multipart, so a multipart deploy from a program still works.
    form = aiohttp.FormData()
    form.add_field("name", "echo")
    form.add_field("wasm", example("echo"), filename="echo.wasm", content_type="application/wasm")
    resp = await open_node.post("/api/v1/agents", data=form)
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:8080", "rebind.attacker.test:80", "caxton.internal"],
)
async def test_foreign_host_names_are_421_when_auth_is_off(open_node: Client, host: str) -> None:
    resp = await open_node.post("/api/v1/messages", json=MESSAGE, headers={"Host": host})
    error = await refused(resp, 421)
    assert error["code"] == "INVALID_REQUEST"
    assert error["details"]["host"] == host
    listing = await open_node.get("/api/v1/agents", headers={"Host": host})
    await refused(listing, 421)  # a rebinding page could otherwise read it
    assert (await open_node.get("/health", headers={"Host": host})).status == 200
    assert (await open_node.get("/ready", headers={"Host": host})).status == 200


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080", "localhost.", "10.1.2.3:80"],
)
async def test_the_nodes_own_names_are_served(open_node: Client, host: str) -> None:
    assert (await open_node.get("/api/v1/agents", headers={"Host": host})).status == 200


async def test_host_names_are_not_checked_with_auth_or_behind_a_trusted_proxy(
    tmp_path: Path,
) -> None:
    token = TokenIssuer(SECRET, default_expiry=60).create("tester")
    bearer = {"Authorization": f"Bearer {token}"}
    async with serve(tmp_path / "auth", auth_enabled=True, jwt_secret=Secret(SECRET)) as client:
        resp = await client.get("/api/v1/agents", headers={**bearer, "Host": "caxton.example"})
        assert resp.status == 200
        # With auth on, loopback pages are cross-site like any other...
        post = await client.post(
            "/api/v1/messages", json=MESSAGE, headers={**bearer, "Origin": "http://localhost:1"}
        )
        await refused(post, 403)
        # ...but the node's own origin (a page served under its name) is not.
        same = await client.post(
            "/api/v1/messages",
            json=MESSAGE,
            headers={**bearer, "Host": "caxton.example", "Origin": "https://caxton.example"},
        )
        assert same.status == 202, await same.text()
    async with serve(tmp_path / "proxied", trusted_proxies=("127.0.0.1",)) as client:
        resp = await client.get("/api/v1/agents", headers={"Host": "caxton.example"})
        assert resp.status == 200


async def test_listed_cors_origins_may_change_state(tmp_path: Path) -> None:
    dash = "https://dash.example"
    token = TokenIssuer(SECRET, default_expiry=60).create("tester")
    async with serve(
        tmp_path,
        auth_enabled=True,
        jwt_secret=Secret(SECRET),
        cors_enabled=True,
        cors_origins=(dash,),
    ) as client:
        headers = {"Authorization": f"Bearer {token}"}
        ok = await client.post(
            "/api/v1/messages", json=MESSAGE, headers={**headers, "Origin": dash}
        )
        assert ok.status == 202, await ok.text()
        assert ok.headers["Access-Control-Allow-Origin"] == dash
        bad = await client.post(
            "/api/v1/messages", json=MESSAGE, headers={**headers, "Origin": EVIL}
        )
        await refused(bad, 403)


async def test_a_cross_site_websocket_is_refused(open_node: Client) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await open_node.ws_connect("/api/v1/events", origin=EVIL)
    assert info.value.status == 403
    ws = await open_node.ws_connect("/api/v1/events", origin="http://localhost:3000")
    await ws.close()


async def test_the_openapi_document_lists_the_new_statuses(open_node: Client) -> None:
    doc = await (await open_node.get("/api/v1/openapi.json")).json()
    send = doc["paths"]["/api/v1/messages"]["post"]["responses"]
    assert {"403", "415", "421"} <= set(send)
    assert send["415"]["content"]["application/json"]["schema"]["required"] == ["error"]
    listing = doc["paths"]["/api/v1/agents"]["get"]["responses"]
    assert "421" in listing
    assert "415" not in listing
    assert "421" not in doc["paths"]["/health"]["get"]["responses"]


async def test_the_admin_listener_checks_host_even_with_auth(tmp_path: Path) -> None:
    """It has no tokens at all, so a rebinding page must not read ``/config``."""
    from caxton.api.admin import create_admin_app

    config = Config(
        coordination=CoordinationConfig(local_state_path=tmp_path / "local.db"),
        security=SecurityConfig(auth_enabled=True, jwt_secret=Secret(SECRET)),
    )
    node = Node(config)
    await node.start()
    client: Client = TestClient(TestServer(create_admin_app(node)))
    await client.start_server()
    try:
        error = await refused(
            await client.get("/config", headers={"Host": "evil.example:8081"}), 421
        )
        # Auth is on, but not here: the message must not say "with authentication off".
        assert "where no token is checked" in error["message"]
        assert (await client.get("/config", headers={"Host": "localhost:8081"})).status == 200
        assert (await client.get("/health", headers={"Host": "evil.example"})).status == 200
        doc = await (await client.get("/openapi.json")).json()
        assert "421" in doc["paths"]["/config"]["get"]["responses"]
        assert "421" not in doc["paths"]["/health"]["get"]["responses"]
    finally:
        await client.close()
        await node.aclose()


async def raw_request(client: Client, request_line: str, host: str) -> tuple[int, dict[str, Any]]:
    """Send one request with `request_line` as written (aiohttp's client only sends paths)."""
    import asyncio
    import json

    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(f"{request_line}\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


@pytest.mark.parametrize(
    "target",
    [
        "http://evil.example/api/v1/agents",
        "http://evil.example:8080/api/v1/agents",
        "HTTP://Evil.Example/api/v1/agents",
        "http://127.0.0.1@evil.example/api/v1/agents",
        "ftp://evil.example/api/v1/agents",
    ],
)
async def test_an_absolute_form_target_names_the_host_that_is_checked(
    open_node: Client, target: str
) -> None:
    """``GET http://evil.example/... HTTP/1.1`` with ``Host: 127.0.0.1`` was served: the target's
    authority replaces Host (what aiohttp's request.host says), so it is what must pass."""
    own = f"127.0.0.1:{open_node.port}"
    status, body = await raw_request(open_node, f"GET {target} HTTP/1.1", own)
    assert status == 421, body
    assert body["error"]["code"] == "INVALID_REQUEST"
    assert "evil.example" in body["error"]["details"]["host"].lower()
    # The node's own names in absolute form are served, as with Host.
    status, body = await raw_request(
        open_node, f"GET http://{own}/api/v1/agents HTTP/1.1", "evil.example"
    )
    assert status == 200, body
    status, body = await raw_request(open_node, "GET http://localhost/api/v1/agents HTTP/1.1", own)
    assert status == 200, body
