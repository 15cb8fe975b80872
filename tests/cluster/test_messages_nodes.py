"""Messages across two real nodes (each with its own nats-server child) in this process."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from caxton.agents import DeployRequest
from caxton.api.app import create_app
from caxton.cluster.directory import FixedDirectory
from caxton.cluster.forwarder import Acked
from caxton.cluster.messages import ClusterMessages
from caxton.node import Node
from caxton.observability.metrics import Metrics, render_metrics
from caxton.storage.outbox import OutboxEntry
from tests.nodeproc import free_port
from tests.support import eventually, example

from .conftest import node_config

Nodes = Callable[..., Node]


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    """Makes nodes ``a``, ``b``, ... of one cluster (``a`` listens, the others seed it)."""
    port = free_port()
    made: list[Node] = []

    def make(name: str) -> Node:
        node = Node(node_config(tmp_path, name, port))
        made.append(node)
        return node

    yield make
    for node in reversed(made):
        await node.aclose()


async def until(check: Callable[[], bool], within: float, what: str) -> None:
    """`eventually` for a plain condition."""

    async def probe() -> bool:
        return check()

    await eventually(probe, within, what=what)


def place(placement: dict[str, str], *nodes: Node) -> None:
    for node in nodes:
        assert node.cluster is not None
        node.cluster.directory = FixedDirectory(placement)


def remote_of(node: Node) -> ClusterMessages:
    remote = node.cluster_messages
    assert remote is not None
    return remote


async def deploy(node: Node, name: str, module: str | None = None) -> None:
    await node.agents.deploy(DeployRequest(name=name, wasm=example(module or name)))


async def test_a_wait_post_to_a_gets_the_reply_of_an_agent_on_b(nodes: Nodes) -> None:
    a, b = nodes("a"), nodes("b")
    await a.start()
    await b.start()
    place({"echo": "b"}, a, b)
    await deploy(b, "echo")
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(a)))
    await client.start_server()
    try:
        message = {"receiver": "echo", "performative": "request", "content": {"n": 7}}
        answer = await client.post("/api/v1/messages?wait=5s", json=message)
        assert answer.status == 200, await answer.text()
        reply = await answer.json()
        assert reply["sender"] == "echo"
        assert reply["content"] == {"n": 7}
        # Without ?wait: accepted on A (202), delivered on B, the reply kept on B.
        answer = await client.post("/api/v1/messages", json=message)
        assert answer.status == 202
    finally:
        await client.close()
    remote = remote_of(a)
    await until(lambda: remote.statistics().acknowledged == 2, 5, "both acknowledged")
    assert remote_of(b).statistics().received == 2
    assert await a.storage.outbox.depth() == 0
    metrics = Metrics.create(CollectorRegistry(), process_metrics=False)
    metrics.register_snapshot_source("cluster_messages", remote.metric_samples)
    text = render_metrics(metrics.registry)[0].decode()
    assert "caxton_cluster_forward_acknowledged_total 2.0" in text
    assert "caxton_cluster_outbox_depth " in text


async def test_ping_on_a_and_pong_on_b_play_many_rounds(nodes: Nodes) -> None:
    a, b = nodes("a"), nodes("b")
    await a.start()
    await b.start()
    place({"ping": "a", "pong": "b"}, a, b)
    await deploy(b, "pong")
    await deploy(a, "ping")
    rounds = 300
    accepted = await a.messaging.submit(
        {
            "receiver": "ping",
            "performative": "request",
            "content": {"op": "start", "peer": "pong", "n": rounds},
        },
        wait=True,
    )
    assert accepted.reply is not None
    reply = await accepted.reply.wait(30)
    assert reply is not None
    assert reply["content"] == {"done": rounds}
    # Every request reached pong once and in order (ping checks each inform's number).
    assert b.runtime.agent_statistics("pong").messages_handled == rounds
    assert a.runtime.agent_statistics("ping").messages_handled == rounds + 1
    # Agents' sends went out before their outbox rows committed, and every row is gone: the
    # owners acknowledged them, most through commit notices.
    for node in (a, b):
        stats = remote_of(node).statistics()
        assert stats.early > 0, stats
        assert stats.early_acknowledged > 0, stats

    async def empty() -> bool:
        return all([await node.storage.outbox.depth() == 0 for node in (a, b)])

    await eventually(empty, 10, what="every outbox row deleted")


async def test_a_message_for_a_node_that_is_down_is_delivered_once_it_starts(
    nodes: Nodes,
) -> None:
    a, b = nodes("a"), nodes("b")
    await a.start()
    await b.start()
    await deploy(b, "echo")
    await b.aclose()  # b is down; echo is stored there and comes back with it
    place({"echo": "b"}, a)
    accepted = [
        await a.messaging.submit(
            {"receiver": "echo", "performative": "request", "content": i}, client="tester"
        )
        for i in range(5)
    ]
    remote = remote_of(a)
    await until(lambda: remote.statistics().failed_requests >= 1, 10, "a failed forward to b")
    assert await a.storage.outbox.depth() == 5
    b = nodes("b")
    await b.start()
    place({"echo": "b"}, a, b)

    async def drained() -> bool:
        return await a.storage.outbox.depth() == 0

    await eventually(drained, 20, what="the outbox drained to b")
    await until(lambda: b.runtime.agent_statistics("echo").messages_handled == 5, 5, "5 handled")
    # Each echo reply came back to A's client, in its conversation.
    for one in accepted:

        async def replied(conversation: str = one.conversation_id) -> bool:
            messages, _ = await a.messaging.conversation(conversation)
            return [m["sender"] for m in messages] == ["tester"] and bool(
                remote.statistics().received
            )

        await eventually(replied, 5, what="the reply came back")
    assert remote.statistics().received == 5


async def test_a_lost_acknowledgement_delivers_no_duplicate(nodes: Nodes) -> None:
    a, b = nodes("a"), nodes("b")
    await a.start()
    await b.start()
    place({"echo": "b"}, a, b)
    await deploy(b, "echo")
    remote = remote_of(a)
    real = remote.send
    lost: list[int] = []

    async def lose_first_ack(node: str, entries: Sequence[OutboxEntry]) -> Acked:
        acked = await real(node, entries)  # b committed and delivered them
        if not lost:
            lost.extend([*acked.committed, *acked.pending])
            raise TimeoutError("the acknowledgement was lost")
        return acked

    remote.send = lose_first_ack  # type: ignore[method-assign]
    for i in range(3):
        await a.messaging.submit(
            {"receiver": "echo", "performative": "request", "content": i}, client="tester"
        )

    async def drained() -> bool:
        return await a.storage.outbox.depth() == 0

    await eventually(drained, 10, what="the retried batch acknowledged")
    assert lost
    assert remote.statistics().retried >= 1
    assert remote_of(b).statistics().duplicates >= 1
    await asyncio.sleep(0.3)
    assert b.runtime.agent_statistics("echo").messages_handled == 3


async def test_replies_to_a_client_on_another_node_reach_its_event_stream(
    nodes: Nodes,
) -> None:
    a, b = nodes("a"), nodes("b")
    await a.start()
    await b.start()
    place({"echo": "b"}, a, b)
    await deploy(b, "echo")
    subscription = a.messaging.subscribe(agent="echo")
    with contextlib.closing(subscription):
        accepted = await a.messaging.submit(
            {"receiver": "echo", "performative": "request", "content": "hi"}, client="ws"
        )
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            async for event in subscription:
                seen.append(event)
                if event.get("sender") == "echo":
                    break
    reply = next(e for e in seen if e.get("sender") == "echo")
    assert reply["conversation_id"] == accepted.conversation_id
    assert json.dumps(reply["content"]) == '"hi"'


async def test_conversations_and_dead_letters_are_gathered_from_every_member(
    nodes: Nodes,
) -> None:
    a, b = nodes("a"), nodes("b")
    await a.start()
    await b.start()
    place({"echo": "b", "ghost": "b"}, a, b)
    await deploy(b, "echo")
    assert a.cluster is not None

    async def both_alive() -> bool:
        assert a.cluster is not None
        peer = a.cluster.membership.get("b")
        return peer is not None and peer.state == "alive"

    await eventually(both_alive, 10, what="a sees b alive")
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(a)))
    await client.start_server()
    try:
        message = {"receiver": "echo", "performative": "request", "content": 1}
        answer = await client.post("/api/v1/messages?wait=5s", json=message)
        assert answer.status == 200
        conversation = answer.headers["X-Caxton-Conversation-Id"]
        answer = await client.get(f"/api/v1/conversations/{conversation}")
        assert answer.status == 200
        body = await answer.json()
        assert [(m["sender"], m["node"]) for m in body["messages"]][1:] == [("echo", "b")]
        assert body["messages"][0]["node"] == "a"
        assert body["total"] == 2
        assert body["missing_nodes"] == []

        # A message for an agent b does not have is dead-lettered on b, listed on a.
        ghost = {"receiver": "ghost", "performative": "inform", "content": 2}
        assert (await client.post("/api/v1/messages", json=ghost)).status == 202

        async def listed() -> list[dict[str, Any]] | None:
            answer = await client.get("/api/v1/dead-letters")
            letters = (await answer.json())["dead_letters"]
            return [one for one in letters if one["receiver"] == "ghost"] or None

        [letter] = await eventually(listed, 5, what="b's dead letter listed on a")
        assert letter["node"] == "b"
        assert letter["reason"] == "unknown_receiver"

        # A member that does not answer in time is named, and the rest is still served.
        remote_b = remote_of(b)

        async def silent(payload: bytes) -> bytes:
            await asyncio.sleep(5)
            return b""

        remote_b.gather.answer = silent  # type: ignore[method-assign]
        remote_of(a).gather.timeout = 0.3
        answer = await client.get(f"/api/v1/conversations/{conversation}")
        body = await answer.json()
        assert body["missing_nodes"] == ["b"]
        assert [m["node"] for m in body["messages"]] == ["a"]
    finally:
        await client.close()


async def test_the_registry_places_the_agent_without_a_fixed_directory(nodes: Nodes) -> None:
    a, b = nodes("a"), nodes("b")
    await a.start()
    await b.start()
    await deploy(b, "echo")
    assert a.cluster is not None
    cluster = a.cluster
    await until(lambda: cluster.directory.owner("echo") == "b", 10, "a's registry knows echo")
    accepted = await a.messaging.submit(
        {"receiver": "echo", "performative": "request", "content": "r"}, wait=True
    )
    assert accepted.reply is not None
    reply = await accepted.reply.wait(5)
    assert reply is not None
    assert reply["content"] == "r"
