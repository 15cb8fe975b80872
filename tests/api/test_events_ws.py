"""The WebSocket event stream with a real aiohttp client against a real node and agents."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.api.test_messages_api import Api, api, error, ok
from tests.support import next_event

__all__ = ["api"]

WS = "/api/v1/events"


async def connect(api: Api, **query: str) -> aiohttp.ClientWebSocketResponse:
    ws = await api.client.ws_connect(WS, params=query)
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "subscribed"
    return ws


async def agent_state(ws: aiohttp.ClientWebSocketResponse, state: str) -> dict[str, Any]:
    """The next lifecycle event with ``state`` (earlier ones, e.g. from the deploy, skipped)."""
    while True:
        event = await next_event(ws, "agent")
        if event["state"] == state:
            return event


async def test_message_events_for_an_agent(api: Api) -> None:
    await api.deploy("echo", "echo")
    await api.deploy("pong", "pong")
    ws = await connect(api, agent="echo")
    sent = await ok(
        await api.send({"receiver": "echo", "performative": "request", "content": "hi"}), 202
    )
    await api.send({"receiver": "pong", "performative": "request", "content": "not echo"})
    first = await next_event(ws, "message")
    second = await next_event(ws, "message")
    assert first["message_id"] == sent["message_id"]
    assert first["receiver"] == "echo"
    assert second["sender"] == "echo"
    assert second["performative"] == "inform"
    assert second["conversation_id"] == sent["conversation_id"]
    assert second["content"] == "hi"
    await ws.close()


async def test_performative_and_conversation_filters(api: Api) -> None:
    await api.deploy("echo", "echo")
    ws = await connect(api, performative="Inform", conversation="c-42")
    await api.send({"receiver": "echo", "performative": "request", "content": 1})
    await api.send(
        {"receiver": "echo", "performative": "request", "content": 2, "conversation_id": "c-42"}
    )
    event = await next_event(ws, "message")
    assert event["performative"] == "inform"
    assert event["content"] == 2
    assert event["conversation_id"] == "c-42"
    await ws.close()


async def test_lifecycle_and_dead_letter_events(api: Api) -> None:
    await api.deploy("echo", "echo")
    ws = await connect(api, agent="echo")
    await ok(await api.client.post("/api/v1/agents/echo/stop"), 200)
    assert await agent_state(ws, "stopped") == {"type": "agent", "name": "echo", "state": "stopped"}
    await ok(await api.client.post("/api/v1/agents/echo/start"), 200)
    assert (await agent_state(ws, "running"))["name"] == "echo"
    await ws.close()

    ws = await connect(api)
    await api.send({"receiver": "nobody-here", "performative": "inform"})
    dead = await next_event(ws, "dead_letter")
    assert dead["reason"] == "unknown_receiver"
    assert dead["receiver"] == "nobody-here"
    await ws.close()


async def test_heartbeats(api: Api) -> None:
    ws = await api.client.ws_connect(WS, params={"heartbeat": "1s"})
    hello = await ws.receive_json(timeout=5)
    assert hello == {
        "type": "subscribed",
        "filters": {"agent": None, "performative": None, "conversation": None},
        "heartbeat": 1.0,
    }
    beat = await next_event(ws, "heartbeat")
    assert beat["time"].endswith("Z")
    await ws.close()


async def test_bad_subscriptions_are_refused_before_the_upgrade(api: Api) -> None:
    for query in ({"performative": "shout"}, {"heartbeat": "0.1s"}, {"max_queue": "1"}, {"x": "1"}):
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await api.client.ws_connect(WS, params=query)
        assert caught.value.status == 400
    await error(await api.client.get(WS), 426, "INVALID_REQUEST")


async def test_a_slow_subscriber_is_dropped_with_4008(api: Api) -> None:
    await api.deploy("echo", "echo")
    ws = await api.client.ws_connect(WS, params={"max_queue": "100", "heartbeat": "60s"})
    content = "x" * 7000
    # The client reads nothing while the events (about 7 KB each) fill the socket buffers.
    for _ in range(20):
        await asyncio.gather(
            *(
                api.send({"receiver": "echo", "performative": "inform", "content": content})
                for _ in range(50)
            )
        )
    # The router was never slowed: every message was accepted and echoed meanwhile.
    stats = api.node.messaging.statistics()
    assert stats.submitted >= 1000
    seen = 0
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        seen += 1
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert msg.extra == "too slow: events were dropped"
    assert ws.close_code == 4008
    assert 100 < seen < 2000  # what the socket buffers held, then nothing more
    assert api.node.messaging.statistics().subscribers_dropped >= 1
