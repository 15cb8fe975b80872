"""The debug view's recent messages come from the message history: there on the first call."""

from __future__ import annotations

from typing import Any

from caxton.agents import DeployRequest
from caxton.messaging.recent import recent_messages
from tests.api.test_messages_api import Api, api, ok
from tests.support import wat

__all__ = ["api"]  # the fixture, shared with test_messages_api


async def test_first_debug_call_shows_what_happened_before(api: Api) -> None:
    await api.deploy("echo", "echo")
    await api.deploy("other", "echo")
    path = "/api/v1/agents/echo/debug"
    reply = await ok(
        await api.send(
            {"receiver": "echo", "performative": "request", "content": 1, "sender": "ops"},
            wait="5s",
        ),
        200,
    )
    assert reply["content"] == 1
    await ok(
        await api.send({"receiver": "other", "performative": "request", "content": 2}, wait="5s"),
        200,
    )
    await ok(await api.send({"receiver": ["other", "echo"], "performative": "inform"}), 202)

    view = await ok(await api.client.get(path), 200)  # the first call for this agent
    recent = view["recent_messages"]
    got = [(m["sender"], m["performative"], m.get("content")) for m in recent["messages"]]
    assert got[:2] == [("ops", "request", 1), ("echo", "inform", 1)]
    assert got[2][1] == "inform"  # the one to both agents, last (oldest first)
    assert len(got) in (3, 4)  # and echo's reply to it, if it was handled already
    assert all(m.get("content") != 2 for m in recent["messages"])  # not echo's
    assert recent["complete"] is True
    assert recent["scanned"] >= 5

    last = await ok(await api.client.get(path, params={"messages": "1"}), 200)
    assert last["recent_messages"]["messages"] == recent["messages"][-1:]
    none = await ok(await api.client.get(path, params={"messages": "0"}), 200)
    assert none["recent_messages"]["messages"] == []


async def test_the_history_scan_is_bounded(api: Api) -> None:
    await api.deploy("echo", "echo")
    for i in range(3):  # each answered before the next (so all before the five below)
        sent = {"receiver": "echo", "performative": "request", "content": i}
        await ok(await api.send(sent, wait="5s"), 200)
    for _ in range(5):
        await ok(await api.send({"receiver": "nobody-here", "performative": "inform"}), 202)
    messaging = api.node.messaging
    found = await recent_messages(messaging, "echo", 10, budget=5)
    assert found.messages == []
    assert found.complete is False
    assert found.scanned == 5
    everything = await recent_messages(messaging, "echo", 10)
    to_echo: list[Any] = [m.get("content") for m in everything.messages if m["receiver"] == "echo"]
    assert to_echo == [0, 1, 2]
    assert everything.complete is True


async def test_debug_says_whether_and_why_not_an_agent_is_hibernated(api: Api) -> None:
    await api.deploy("echo", "echo")
    await api.node.agents.deploy(DeployRequest(name="vec", wasm=wat("v128global")))
    echo = await ok(await api.client.get("/api/v1/agents/echo/debug"), 200)
    assert echo["hibernation"] == {"possible": True, "reason": None}
    vec = await ok(await api.client.get("/api/v1/agents/vec/debug"), 200)
    assert vec["hibernation"]["possible"] is False
    assert vec["hibernation"]["reason"] == (
        "never hibernated: a snapshot cannot keep mutable globals of this type: global 0 (v128)"
    )
