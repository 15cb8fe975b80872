"""The messages API on a real node with real wasm agents: send, ?wait, conversations, dead
letters and redrive, and the agent debug view."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from caxton.agents import DeployRequest
from caxton.api.app import create_app
from caxton.config import Config, CoordinationConfig, NetworkingConfig, RuntimeConfig
from caxton.node import Node
from tests.support import EXAMPLES, eventually

KB = 1024

Client = TestClient[Any, Any]

RUNTIME = RuntimeConfig(
    max_concurrent_executions=2,
    execution_timeout=0.5,
    agent_startup_timeout=1.0,
    agent_shutdown_timeout=2.0,
    wasm_memory_limit=8 * KB * KB,
    gc_interval=3600.0,
    max_message_size=8 * KB,
)


@dataclasses.dataclass
class Api:
    node: Node
    client: Client

    async def deploy(self, name: str, example: str) -> None:
        wasm = (EXAMPLES / f"{example}.wasm").read_bytes()
        await self.node.agents.deploy(DeployRequest(name=name, wasm=wasm))

    async def send(self, message: dict[str, Any], **query: str) -> aiohttp.ClientResponse:
        return await self.client.post("/api/v1/messages", json=message, params=query)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    config = Config(
        coordination=CoordinationConfig(local_state_path=tmp_path / "local.db"),
        runtime=RUNTIME,
        networking=dataclasses.replace(NetworkingConfig(), request_timeout=10.0),
    )
    node = Node(config)
    await node.start()
    client: Client = TestClient(TestServer(create_app(node)))
    await client.start_server()
    try:
        yield Api(node, client)
    finally:
        await client.close()
        await node.aclose()


async def ok(resp: aiohttp.ClientResponse, status: int) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def error(resp: aiohttp.ClientResponse, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    err: dict[str, Any] = body["error"]
    return err


async def test_wait_returns_the_echo_reply(api: Api) -> None:
    await api.deploy("echo", "echo")
    content = {"hello": "world", "n": [1, 2.5, None]}
    resp = await api.send(
        {
            "receiver": "echo",
            "performative": "REQUEST",
            "content": content,
            "reply_with": "q-1",
            "sender": "alice",
        },
        wait="5s",
    )
    # The answer is the reply itself (docs/api.md); the request's ids are in headers.
    reply = await ok(resp, 200)
    conversation_id = resp.headers["X-Caxton-Conversation-Id"]
    assert resp.headers["X-Caxton-Message-Id"]
    assert reply["content"] == content
    assert reply["performative"] == "inform"
    assert reply["sender"] == "echo"
    assert reply["receiver"] == "alice"
    assert reply["in_reply_to"] == "q-1"
    assert reply["conversation_id"] == conversation_id
    assert reply["message_id"] != resp.headers["X-Caxton-Message-Id"]


async def test_accepted_then_conversation_lists_both_in_order(api: Api) -> None:
    await api.deploy("echo", "echo")
    sent = await ok(
        await api.send({"receiver": "echo", "performative": "inform", "content": 7}), 202
    )
    assert set(sent) == {"message_id", "conversation_id", "sender", "receivers"}
    assert sent["sender"].startswith("client-")
    path = f"/api/v1/conversations/{sent['conversation_id']}"

    async def both() -> Any:
        page = await ok(await api.client.get(path), 200)
        return page if page["total"] == 2 else None

    page = await eventually(both)
    first, second = page["messages"]
    assert first["message_id"] == sent["message_id"]
    assert first["content"] == 7
    assert second["sender"] == "echo"
    assert second["content"] == 7
    assert (page["offset"], page["limit"], page["conversation_id"]) == (
        0,
        100,
        sent["conversation_id"],
    )
    tail = await ok(await api.client.get(path, params={"offset": "1", "limit": "1"}), 200)
    assert [m["message_id"] for m in tail["messages"]] == [second["message_id"]]
    await error(await api.client.get("/api/v1/conversations/nope"), 404, "NOT_FOUND")
    await error(await api.client.get(path, params={"limit": "0"}), 400, "INVALID_REQUEST")


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"receiver": "echo", "performative": "shout"}, "performative"),
        ({"receiver": "echo"}, "performative"),
        ({"performative": "inform"}, "receiver"),
        ({"performative": "inform", "receiver": []}, "receiver"),
        ({"performative": "inform", "receiver": "echo", "reply_by": "tomorrow"}, "reply_by"),
        ({"performative": "inform", "receiver": "echo", "conversation_id": 5}, "conversation_id"),
        ({"performative": "inform", "receiver": "echo", "sender": "echo"}, "sender"),
    ],
)
async def test_invalid_messages_name_the_field(
    api: Api, message: dict[str, Any], field: str
) -> None:
    await api.deploy("echo", "echo")
    err = await error(await api.send(message), 400, "INVALID_REQUEST")
    assert err["details"]["field"] == field
    assert field in err["message"]


async def test_bad_requests(api: Api) -> None:
    good = {"receiver": "echo", "performative": "inform"}
    err = await error(await api.send(good, wait="soon"), 400, "INVALID_REQUEST")
    assert err["details"]["field"] == "wait"
    await error(await api.send(good, wait="0s"), 400, "INVALID_REQUEST")
    await error(await api.send(good, waitt="1s"), 400, "INVALID_REQUEST")
    for data in (b"", b"{not json", b"[1, 2]", b'"text"'):
        resp = await api.client.post("/api/v1/messages", data=data)
        await error(resp, 400, "INVALID_REQUEST")


async def test_too_large_content_is_413(api: Api) -> None:
    await api.deploy("echo", "echo")
    big = {"receiver": "echo", "performative": "inform", "content": "x" * (9 * KB)}
    err = await error(await api.send(big), 413, "PAYLOAD_TOO_LARGE")
    assert err["details"]["limit"] == 8 * KB


async def test_no_reply_in_time_is_504_with_the_ids(api: Api) -> None:
    await api.deploy("pong", "pong")  # pong ignores anything but request
    resp = await api.send({"receiver": "pong", "performative": "inform"}, wait="200ms")
    err = await error(resp, 504, "UNAVAILABLE")
    assert err["details"]["message_id"]
    assert err["details"]["conversation_id"]
    assert err["details"]["wait_seconds"] == pytest.approx(0.2)


async def test_unknown_receiver_dead_letter_and_redrive(api: Api) -> None:
    sent = await ok(
        await api.send(
            {"receiver": "ghost", "performative": "inform", "content": {"boo": 1}, "sender": "bob"}
        ),
        202,
    )

    async def listed() -> Any:
        page = await ok(await api.client.get("/api/v1/dead-letters"), 200)
        mine = [d for d in page["dead_letters"] if d["message_id"] == sent["message_id"]]
        return mine[0] if mine else None

    letter = await eventually(listed)
    assert letter["reason"] == "unknown_receiver"
    assert letter["receiver"] == "ghost"
    assert letter["sender"] == "bob"
    assert letter["redriven_at"] is None
    assert letter["message"]["content"] == {"boo": 1}

    await api.deploy("ghost", "echo")
    again = await ok(await api.client.post(f"/api/v1/dead-letters/{letter['id']}/redrive"), 202)
    assert again["message_id"] == sent["message_id"]
    assert again["receivers"] == ["ghost"]
    assert again["dead_letter_id"] == letter["id"]
    path = f"/api/v1/conversations/{sent['conversation_id']}"

    async def replied() -> Any:
        page = await ok(await api.client.get(path), 200)
        return [m for m in page["messages"] if m["sender"] == "ghost"]

    (reply,) = await eventually(replied)
    assert reply["content"] == {"boo": 1}
    assert reply["receiver"] == "bob"
    redriven = await eventually(listed)
    assert redriven["redriven_at"] is not None

    twice = api.client.post(f"/api/v1/dead-letters/{letter['id']}/redrive")
    await error(await twice, 400, "INVALID_REQUEST")
    await error(await api.client.post("/api/v1/dead-letters/99999/redrive"), 404, "NOT_FOUND")
    await error(await api.client.post("/api/v1/dead-letters/abc/redrive"), 400, "INVALID_REQUEST")


async def test_redrive_on_a_node_is_refused_without_a_cluster(api: Api) -> None:
    resp = await api.client.post("/api/v1/dead-letters/1/redrive?node=elsewhere")
    body = await error(resp, 400, "INVALID_REQUEST")
    assert body["details"] == {"field": "node"}


async def test_debug_view_has_every_section(api: Api) -> None:
    await api.deploy("echo", "echo")
    path = "/api/v1/agents/echo/debug"
    first = await ok(await api.client.get(path), 200)
    for key in ("state", "version", "kind", "limits", "memory", "mailbox", "counters"):
        assert key in first
    assert first["state"] == "running"
    assert first["kind"] == "reactor"
    assert first["mailbox"]["capacity"] > 0
    assert first["memory"]["limit_bytes"] == 8 * KB * KB
    assert first["recent_messages"]["messages"] == []
    await ok(
        await api.send({"receiver": "echo", "performative": "request", "content": 1}, wait="5s"),
        200,
    )
    await api.send({"receiver": "echo", "performative": "inform", "sender": "echo-fan"})

    async def recorded() -> Any:
        view = await ok(await api.client.get(path), 200)
        return view if len(view["recent_messages"]["messages"]) >= 4 else None

    view = await eventually(recorded)
    performatives = [m["performative"] for m in view["recent_messages"]["messages"]]
    assert performatives[:2] == ["request", "inform"]
    assert view["counters"]["messages_handled"] >= 1
    assert isinstance(view["logs"], list)
    assert isinstance(view["last_errors"], list)
    assert isinstance(view["dead_letters"], list)
    await error(await api.client.get("/api/v1/agents/nobody/debug"), 404, "AGENT_NOT_FOUND")


async def test_many_concurrent_waits_each_get_their_own_reply(api: Api) -> None:
    await api.deploy("echo", "echo")

    async def one(i: int) -> None:
        body = await ok(
            await api.send(
                {"receiver": "echo", "performative": "request", "content": i}, wait="5s"
            ),
            200,
        )
        assert body["content"] == i

    await asyncio.gather(*(one(i) for i in range(50)))


async def test_bulk_send_accepts_an_array_together(api: Api) -> None:
    await api.deploy("echo", "echo")
    batch = [{"receiver": "echo", "performative": "inform", "content": i} for i in range(3)]
    resp = await api.client.post("/api/v1/messages", json=batch)
    body = await ok(resp, 202)
    ids = body["accepted"]
    assert len(ids) == 3
    assert len({entry["message_id"] for entry in ids}) == 3
    for entry in ids:
        shown = await api.client.get(f"/api/v1/conversations/{entry['conversation_id']}")
        assert shown.status == 200


async def test_bulk_send_with_one_bad_message_accepts_nothing(api: Api) -> None:
    await api.deploy("echo", "echo")
    batch = [
        {"receiver": "echo", "performative": "inform", "content": 1, "conversation_id": "bulk-1"},
        {"receiver": "echo", "performative": "shout"},
    ]
    resp = await api.client.post("/api/v1/messages", json=batch)
    err = await error(resp, 400, "INVALID_REQUEST")
    assert err["details"]["index"] == 1
    assert err["details"]["field"] == "performative"
    assert (await api.client.get("/api/v1/conversations/bulk-1")).status == 404
    not_object = await api.client.post("/api/v1/messages", json=[batch[0], 5])
    assert (await error(not_object, 400, "INVALID_REQUEST"))["details"]["index"] == 1
    malformed = await api.client.post("/api/v1/messages", data=b'[{"receiver": }]')
    await error(malformed, 400, "INVALID_REQUEST")
    assert (await api.client.get("/api/v1/conversations/bulk-1")).status == 404

    waited = await api.client.post("/api/v1/messages", json=batch[:1], params={"wait": "1s"})
    assert (await error(waited, 400, "INVALID_REQUEST"))["details"]["field"] == "wait"
    huge = await api.client.post("/api/v1/messages", json=batch[:1] * 1001)
    await error(huge, 400, "INVALID_REQUEST")
