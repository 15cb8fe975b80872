"""The agents API on a real node (real storage, real wasmtime): every route, form and error."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import wasmtime
from aiohttp.test_utils import TestClient, TestServer

from caxton.api.app import create_app
from caxton.config import Config, CoordinationConfig, NetworkingConfig, RuntimeConfig
from caxton.node import Node
from tests.support import example, wat

KB = 1024

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]

RUNTIME = RuntimeConfig(
    max_concurrent_executions=2,
    execution_timeout=0.5,
    agent_startup_timeout=0.5,
    agent_shutdown_timeout=2.0,
    wasm_memory_limit=8 * KB * KB,
    gc_interval=3600.0,
    max_module_size=64 * KB,
)

# caxton_init logs a line, then returns `RESULT`; caxton_handle returns 0.
_LOGGING_WAT = """
(module
  (import "caxton" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from init")
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0))
  (func (export "caxton_init") (result i32)
    (call $log (i32.const 2) (i32.const 16) (i32.const 15))
    (i32.const RESULT)))
"""


def logging_agent(result: int) -> bytes:
    return bytes(wasmtime.wat2wasm(_LOGGING_WAT.replace("RESULT", str(result))))


def oversized() -> bytes:
    """A valid-looking module above 64 KiB: one big custom section."""
    payload = b"\x03pad" + b"x" * (70 * KB)
    size, leb = len(payload), bytearray()
    while True:
        byte, size = size & 0x7F, size >> 7
        leb.append(byte | (0x80 if size else 0))
        if not size:
            break
    return b"\0asm\1\0\0\0" + b"\0" + bytes(leb) + payload


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    opened: list[tuple[Node, Client]] = []

    async def make(**runtime: Any) -> Client:
        directory = tmp_path / f"node{len(opened)}"
        config = Config(
            coordination=CoordinationConfig(local_state_path=directory / "local.db"),
            runtime=dataclasses.replace(RUNTIME, **runtime),
            networking=dataclasses.replace(NetworkingConfig(), max_request_size=256 * KB),
        )
        node = Node(config)
        await node.start()
        client: Client = TestClient(TestServer(create_app(node)))
        await client.start_server()
        opened.append((node, client))
        return client

    yield make
    for node, client in reversed(opened):
        await client.close()
        await node.aclose()


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    return await make_client()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def deploy(client: Client, name: str, wasm: bytes, **fields: Any) -> Any:
    return await client.post("/api/v1/agents", json={"name": name, "wasm": b64(wasm), **fields})


async def error(resp: aiohttp.ClientResponse, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    err: dict[str, Any] = body["error"]
    return err


# -- deploy: the three forms -------------------------------------------------------------------


async def test_deploy_json(client: Client) -> None:
    resp = await deploy(
        client,
        "echo",
        example("echo"),
        env={"GREETING": "hi"},
        limits={"memory": "4MB"},
        grants={"data_dir": False},
    )
    assert resp.status == 201, await resp.text()
    assert resp.headers["Location"] == "/api/v1/agents/echo"
    agent = await resp.json()
    assert agent["name"] == "echo"
    assert agent["state"] == "running"
    assert agent["kind"] == "reactor"
    assert agent["version"] == 1
    assert agent["versions"] == [1]
    assert agent["env"] == {"GREETING": "hi"}
    assert agent["limits"]["memory_bytes"] == 4 * KB * KB
    assert agent["grants"]["data_dir"] is None
    assert agent["module_size"] == len(example("echo"))
    assert set(agent["counters"]) == {"messages_handled", "failures", "restarts"}

    show = await client.get("/api/v1/agents/echo")
    assert show.status == 200
    assert (await show.json())["name"] == "echo"


async def test_deploy_multipart(client: Client) -> None:
    form = aiohttp.FormData()
    form.add_field("name", "counter")
    form.add_field("wasm", example("counter"), filename="counter.wasm")
    form.add_field("env", json.dumps({"A": "1"}))
    form.add_field("env", "B=two=2")
    form.add_field("memory", str(2 * KB * KB))
    form.add_field("grant_dir", "true")
    resp = await client.post("/api/v1/agents", data=form)
    assert resp.status == 201, await resp.text()
    agent = await resp.json()
    assert agent["env"] == {"A": "1", "B": "two=2"}
    assert agent["limits"]["memory_bytes"] == 2 * KB * KB
    assert agent["grants"]["data_dir"]

    form = aiohttp.FormData()
    form.add_field("module", wat("nop"), filename="nop.wasm")
    form.add_field("name", "nop")
    resp = await client.post("/api/v1/agents", data=form)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Location"] == "/api/v1/agents/nop"


async def test_deploy_raw_wasm_with_query(client: Client) -> None:
    resp = await client.post(
        "/api/v1/agents",
        params=[
            ("name", "shout"),
            ("env", "X=1"),
            ("env", "Y="),
            ("memory", "1MB"),
            ("grant_dir", ""),
        ],
        data=example("shout"),
        headers={"Content-Type": "application/wasm"},
    )
    assert resp.status == 201, await resp.text()
    agent = await resp.json()
    assert agent["kind"] == "command"
    assert agent["env"] == {"X": "1", "Y": ""}
    assert agent["limits"]["memory_bytes"] == KB * KB
    assert resp.headers["Location"] == "/api/v1/agents/shout"
    assert agent["grants"]["data_dir"]

    resp = await deploy(client, "keeper", wat("nop"), grants={"data_dir": True})
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["grants"]["data_dir"]


# -- list, pagination ---------------------------------------------------------------------------


async def test_list_is_paginated(client: Client) -> None:
    for name in ("a-one", "b-two", "c-three"):
        assert (await deploy(client, name, wat("nop"))).status == 201
    page = await (await client.get("/api/v1/agents")).json()
    assert [a["name"] for a in page["agents"]] == ["a-one", "b-two", "c-three"]
    assert (page["total"], page["offset"], page["limit"]) == (3, 0, 100)

    page = await (await client.get("/api/v1/agents?limit=2")).json()
    assert [a["name"] for a in page["agents"]] == ["a-one", "b-two"]
    assert page["total"] == 3
    page = await (await client.get("/api/v1/agents?offset=2&limit=2")).json()
    assert [a["name"] for a in page["agents"]] == ["c-three"]
    page = await (await client.get("/api/v1/agents?offset=10")).json()
    assert page["agents"] == []
    assert page["total"] == 3

    for query in ("limit=0", "limit=1001", "limit=x", "offset=-1", "offset=1.5"):
        err = await error(await client.get(f"/api/v1/agents?{query}"), 400, "INVALID_REQUEST")
        assert query.split("=")[0] in err["message"]


# -- upgrade, rollback, lifecycle, logs ----------------------------------------------------------


async def test_upgrade_and_rollback_change_the_version(client: Client) -> None:
    assert (await deploy(client, "app", wat("nop"))).status == 201

    resp = await client.put(
        "/api/v1/agents/app", data=wat("echo"), headers={"Content-Type": "application/wasm"}
    )
    assert resp.status == 200, await resp.text()
    agent = await resp.json()
    assert (agent["version"], agent["versions"]) == (2, [1, 2])
    assert agent["module_size"] == len(wat("echo"))

    resp = await client.put("/api/v1/agents/app", json={"wasm": b64(example("echo"))})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["version"] == 3

    form = aiohttp.FormData()
    form.add_field("wasm", wat("nop"), filename="nop.wasm")
    resp = await client.put("/api/v1/agents/app", data=form)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["version"] == 4

    resp = await client.put("/api/v1/agents/app?version=2")
    assert resp.status == 200, await resp.text()
    agent = await resp.json()
    assert agent["version"] == 2
    assert agent["module_size"] == len(wat("echo"))
    assert agent["state"] == "running"


async def test_upgrade_and_rollback_errors(client: Client) -> None:
    assert (await deploy(client, "app", wat("nop"))).status == 201
    err = await error(
        await client.put("/api/v1/agents/app", json={"wasm": b64(wat("nop")), "env": {}}),
        400,
        "INVALID_REQUEST",
    )
    assert "'env'" in err["message"]
    resp = await client.put("/api/v1/agents/app?version=1", json={"wasm": b64(wat("nop"))})
    err = await error(resp, 400, "INVALID_REQUEST")
    assert "no body" in err["message"]
    for bad in ("0", "x"):
        resp = await client.put(f"/api/v1/agents/app?version={bad}")
        assert "version" in (await error(resp, 400, "INVALID_REQUEST"))["message"]
    resp = await client.put("/api/v1/agents/app?version=9")
    assert resp.status in (400, 404)
    resp = await client.put(
        "/api/v1/agents/app", data=b"nope", headers={"Content-Type": "application/wasm"}
    )
    await error(resp, 400, "INVALID_WASM")
    agent = await (await client.get("/api/v1/agents/app")).json()
    assert (agent["version"], agent["state"]) == (1, "running")


async def test_stop_start_remove(client: Client) -> None:
    assert (await deploy(client, "echo", wat("echo"))).status == 201
    resp = await client.post("/api/v1/agents/echo/stop")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["state"] == "stopped"
    assert (await (await client.get("/api/v1/agents/echo")).json())["state"] == "stopped"

    resp = await client.post("/api/v1/agents/echo/start")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["state"] == "running"

    resp = await client.delete("/api/v1/agents/echo")
    assert resp.status == 204
    assert await resp.read() == b""
    await error(await client.get("/api/v1/agents/echo"), 404, "AGENT_NOT_FOUND")
    page = await (await client.get("/api/v1/agents")).json()
    assert page["total"] == 0
    # The name is free again.
    assert (await deploy(client, "echo", wat("echo"))).status == 201


async def test_logs(client: Client) -> None:
    assert (await deploy(client, "talker", logging_agent(0))).status == 201
    resp = await client.get("/api/v1/agents/talker/logs")
    assert resp.status == 200
    body = await resp.json()
    assert body["name"] == "talker"
    [line] = [li for li in body["lines"] if li["text"] == "hello from init"]
    assert line["level"] == "warn"
    assert line["time"].endswith("Z")
    assert (await (await client.get("/api/v1/agents/talker/logs?n=0")).json())["lines"] == []
    await error(await client.get("/api/v1/agents/talker/logs?n=-1"), 400, "INVALID_REQUEST")


async def test_unknown_agent_is_404_everywhere(client: Client) -> None:
    base = "/api/v1/agents/ghost"
    calls = [
        client.get(base),
        client.put(base, data=wat("nop"), headers={"Content-Type": "application/wasm"}),
        client.put(f"{base}?version=1"),
        client.post(f"{base}/stop"),
        client.post(f"{base}/start"),
        client.delete(base),
        client.get(f"{base}/logs"),
    ]
    for call in calls:
        err = await error(await call, 404, "AGENT_NOT_FOUND")
        assert "ghost" in err["message"]


# -- deploy errors ------------------------------------------------------------------------------


async def test_name_rules_and_duplicates(client: Client) -> None:
    for name in ("Echo", "1abc", "a_b", "a" * 64, ""):
        err = await error(await deploy(client, name, wat("nop")), 400, "INVALID_REQUEST")
        assert "name" in err["message"]
    err = await error(
        await client.post("/api/v1/agents", json={"wasm": b64(wat("nop"))}), 400, "INVALID_REQUEST"
    )
    assert "name" in err["message"]
    assert (await deploy(client, "twin", wat("nop"))).status == 201
    err = await error(await deploy(client, "twin", wat("nop")), 409, "AGENT_ALREADY_EXISTS")
    assert "twin" in err["message"]


async def test_max_agents_is_429(make_client: MakeClient) -> None:
    client = await make_client(max_agents=2)
    assert (await deploy(client, "one", wat("nop"))).status == 201
    assert (await deploy(client, "two", wat("nop"))).status == 201
    await error(await deploy(client, "three", wat("nop")), 429, "RESOURCE_LIMIT_EXCEEDED")
    assert (await client.delete("/api/v1/agents/one")).status == 204
    assert (await deploy(client, "three", wat("nop"))).status == 201


async def test_invalid_modules(client: Client) -> None:
    echo = example("echo")
    cases: list[tuple[bytes, str | None]] = [
        (b"this is not wasm", None),
        (echo[: len(echo) // 2], None),
        (b"\0asm\x02\0\0\0", None),
        (wat("bad_import"), "env.foo"),
        (wat("no_handle"), "caxton_handle"),
        (wat("wrong_sig"), "caxton_handle"),
    ]
    for index, (wasm, needle) in enumerate(cases):
        err = await error(await deploy(client, f"bad-{index}", wasm), 400, "INVALID_WASM")
        if needle is not None:
            assert needle in err["message"], err
    assert (await (await client.get("/api/v1/agents")).json())["total"] == 0


async def test_init_failure_carries_the_agent_log(client: Client) -> None:
    err = await error(await deploy(client, "grumpy", logging_agent(7)), 400, "INVALID_WASM")
    texts = [line["text"] if isinstance(line, dict) else line for line in err["details"]["logs"]]
    assert any("hello from init" in text for text in texts), err
    await error(await client.get("/api/v1/agents/grumpy"), 404, "AGENT_NOT_FOUND")


async def test_module_above_max_module_size_is_413(client: Client) -> None:
    big = oversized()
    err = await error(await deploy(client, "big", big), 413, "PAYLOAD_TOO_LARGE")
    assert err["details"]["max_bytes"] == 64 * KB
    form = aiohttp.FormData()
    form.add_field("name", "big")
    form.add_field("wasm", big, filename="big.wasm")
    await error(await client.post("/api/v1/agents", data=form), 413, "PAYLOAD_TOO_LARGE")
    resp = await client.post(
        "/api/v1/agents?name=big", data=big, headers={"Content-Type": "application/wasm"}
    )
    await error(resp, 413, "PAYLOAD_TOO_LARGE")
    # Above networking.max_request_size, aiohttp refuses the body itself.
    huge = b"\0" * (300 * KB)
    resp = await client.post(
        "/api/v1/agents", data=huge, headers={"Content-Type": "application/json"}
    )
    await error(resp, 413, "PAYLOAD_TOO_LARGE")


async def test_malformed_bodies(client: Client) -> None:
    nop = b64(wat("nop"))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "x", "wasm": "not base64!"}, "wasm"),
        ({"name": "x", "wasm": 12}, "wasm"),
        ({"name": "x"}, "wasm"),
        ({"name": "x", "wasm": nop, "colour": "red", "size": 1}, "'colour', 'size'"),
        ({"name": "x", "wasm": nop, "limits": {"memory": "lots"}}, "limits.memory"),
        ({"name": "x", "wasm": nop, "limits": {"memory": 0}}, "limits.memory"),
        ({"name": "x", "wasm": nop, "limits": {"fuel": -1}}, "limits.fuel"),
        ({"name": "x", "wasm": nop, "limits": {"fuel": "x"}}, "limits.fuel"),
        ({"name": "x", "wasm": nop, "limits": {"cpu": 1}}, "limits.cpu"),
        ({"name": "x", "wasm": nop, "limits": 5}, "limits"),
        ({"name": "x", "wasm": nop, "grants": {"data_dir": "maybe"}}, "grants.data_dir"),
        ({"name": "x", "wasm": nop, "grants": {"network": True}}, "grants.network"),
        ({"name": "x", "wasm": nop, "env": {"A": 1}}, "env"),
        ({"name": "x", "wasm": nop, "env": ["A=1"]}, "env"),
        ({"name": 5, "wasm": nop}, "name"),
    ]
    for body, needle in cases:
        resp = await client.post("/api/v1/agents", json=body)
        err = await error(resp, 400, "INVALID_REQUEST")
        assert needle in err["message"], (body, err)

    resp = await client.post("/api/v1/agents", json=[1, 2])
    await error(resp, 400, "INVALID_REQUEST")
    resp = await client.post(
        "/api/v1/agents", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    await error(resp, 400, "INVALID_REQUEST")
    resp = await client.post(
        "/api/v1/agents?name=x&colour=red",
        data=wat("nop"),
        headers={"Content-Type": "application/wasm"},
    )
    assert "colour" in (await error(resp, 400, "INVALID_REQUEST"))["message"]
    resp = await client.post(
        "/api/v1/agents", data=wat("nop"), headers={"Content-Type": "application/wasm"}
    )
    assert "name" in (await error(resp, 400, "INVALID_REQUEST"))["message"]
    resp = await client.post(
        "/api/v1/agents?name=x&env=novalue",
        data=wat("nop"),
        headers={"Content-Type": "application/wasm"},
    )
    assert "env" in (await error(resp, 400, "INVALID_REQUEST"))["message"]
    resp = await client.post(
        "/api/v1/agents", data=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert "Content-Type" in (await error(resp, 415, "INVALID_REQUEST"))["message"]

    form = aiohttp.FormData()
    form.add_field("name", "x")
    form.add_field("colour", "red")
    form.add_field("wasm", wat("nop"), filename="nop.wasm")
    resp = await client.post("/api/v1/agents", data=form)
    assert "colour" in (await error(resp, 400, "INVALID_REQUEST"))["message"]
    form = aiohttp.FormData({"name": "x"}, default_to_multipart=True)
    resp = await client.post("/api/v1/agents", data=form)
    assert "wasm" in (await error(resp, 400, "INVALID_REQUEST"))["message"]
    assert (await (await client.get("/api/v1/agents")).json())["total"] == 0


async def test_openapi_documents_the_agent_routes(client: Client) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    paths = doc["paths"]
    assert set(paths["/api/v1/agents"]) == {"get", "post"}
    assert set(paths["/api/v1/agents/{name}"]) == {"get", "put", "delete"}
    for suffix in ("stop", "start"):
        assert set(paths[f"/api/v1/agents/{{name}}/{suffix}"]) == {"post"}
    assert set(paths["/api/v1/agents/{name}/logs"]) == {"get"}
    post = paths["/api/v1/agents"]["post"]
    assert set(post["requestBody"]["content"]) == {
        "application/json",
        "multipart/form-data",
        "application/wasm",
    }
    assert {"201", "400", "409", "413", "429"} <= set(post["responses"])
    query = {p["name"] for p in paths["/api/v1/agents"]["get"]["parameters"]}
    assert query == {"offset", "limit", "node"}
