"""The members surface: ``GET/DELETE /api/v1/cluster/members``, ``caxton cluster``, the
``member`` events on ``/api/v1/events``, the log lines, and ``/ready`` waiting for the node to
hear its own heartbeat. Nodes in this process, each with its real nats-server child."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from caxton.api.app import create_app
from caxton.cli import cli
from caxton.cluster.link import ClusterLink
from caxton.config import Config, CoordinationConfig
from caxton.node import Node
from tests.nodeproc import free_port
from tests.support import eventually

from .conftest import coordination

P = 0.2  # probe interval, seconds
MEMBERS = "/api/v1/cluster/members"


class Cluster:
    """Nodes named by the test, all seeded with the first one's route port."""

    def __init__(self, tmp_path: Path, stack: AsyncExitStack) -> None:
        self.tmp_path = tmp_path
        self.stack = stack
        self.port = free_port()
        self.nodes: dict[str, Node] = {}
        self.clients: dict[str, TestClient[Any, Any]] = {}

    async def start(self, name: str) -> TestClient[Any, Any]:
        listen = self.port if not self.nodes else None
        keys = coordination(
            listen,
            (self.port,),
            node_name=name,
            local_state_path=self.tmp_path / name / "local.db",
            probe_interval=P,
        )
        node = Node(Config(coordination=keys))
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(node)))
        await client.start_server()
        self.stack.push_async_callback(client.close)
        self.stack.push_async_callback(node.aclose)
        await node.start()
        self.nodes[name], self.clients[name] = node, client
        return client


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with AsyncExitStack() as stack:
        yield Cluster(tmp_path, stack)


async def members(client: TestClient[Any, Any]) -> dict[str, Any]:
    answer = await client.get(MEMBERS)
    assert answer.status == 200, await answer.text()
    body: dict[str, Any] = await answer.json()
    return body


async def next_member_event(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = await ws.receive_json(timeout=10)
        if event["type"] == "member":
            return event


def cli_run(client: TestClient[Any, Any], *args: str) -> Any:
    """`caxton cluster ...` against `client`'s server, in a thread (the server runs here)."""
    server = str(client.make_url("")).rstrip("/")
    return asyncio.to_thread(
        CliRunner().invoke, cli, ["cluster", *args], env={"CAXTON_SERVER": server}
    )


async def test_members_events_logs_cli_and_remove(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="caxton.cluster.membership")
    one = await cluster.start("one")
    ws = await one.ws_connect("/api/v1/events")
    assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
    two = await cluster.start("two")

    joined = await next_member_event(ws)
    assert joined["node"] == "two"
    assert (joined["previous"], joined["state"]) == (None, "alive")
    assert joined["cluster_address"] == str(cluster.nodes["two"].config.coordination.bind_addr)
    datetime.fromisoformat(joined["time"].replace("Z", "+00:00"))

    async def both_see_both() -> dict[str, Any] | None:
        views = [await members(client) for client in (one, two)]
        states = [{m["name"]: m["state"] for m in view["members"]} for view in views]
        ok = all(state == {"one": "alive", "two": "alive"} for state in states)
        return views[0] if ok else None

    view = await eventually(both_see_both, 10, what="both nodes see both alive")
    assert view["cluster_enabled"] is True
    assert (view["node"], view["total"]) == ("one", 2)
    first, second = view["members"]
    assert (first["name"], first["self"], second["self"]) == ("one", True, False)
    link = cluster.nodes["two"].cluster
    assert link is not None
    assert second["api_address"] == str(cluster.nodes["two"].config.networking.bind_address)
    assert second["cluster_address"] == str(cluster.nodes["two"].config.coordination.bind_addr)
    assert second["incarnation"] == link.membership.incarnation
    assert second["agents"] == 0
    assert second["last_change"].endswith("Z")
    datetime.fromisoformat(second["last_change"].replace("Z", "+00:00"))

    table = await cli_run(one, "members")
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "AGENTS", "API", "CLUSTER", "LAST", "CHANGE"]
    assert any(line.split()[:3] == ["one", "*", "alive"] for line in lines)
    assert any(line.split()[:3] == ["two", "alive", "0"] for line in lines)
    as_json = await cli_run(one, "members", "--output", "json")
    assert as_json.exit_code == 0, as_json.output
    assert [m["name"] for m in json.loads(as_json.output)["members"]] == ["one", "two"]

    # Node two stops beating without a word (what the others see of a kill -9).
    await link.membership.aclose()
    suspect = await next_member_event(ws)
    assert (suspect["node"], suspect["previous"], suspect["state"]) == ("two", "alive", "suspect")

    refused = await one.delete(f"{MEMBERS}/two")
    assert refused.status == 409
    error = (await refused.json())["error"]
    assert error["code"] == "MEMBER_NOT_DOWN"
    assert error["details"] == {"name": "two", "state": "suspect"}
    assert "two is suspect" in error["message"]
    cli_refused = await cli_run(one, "remove", "two")
    assert cli_refused.exit_code == 1
    assert "only a dead or left member can be removed" in cli_refused.output

    dead = await next_member_event(ws)
    assert (dead["node"], dead["previous"], dead["state"]) == ("two", "suspect", "dead")
    removed = await cli_run(one, "remove", "two")
    assert removed.exit_code == 0, removed.output
    assert removed.output.strip() == "removed member two (it was dead)"
    gone = await next_member_event(ws)
    assert (gone["node"], gone["previous"], gone["state"]) == ("two", "dead", "removed")
    assert [m["name"] for m in (await members(one))["members"]] == ["one"]

    unknown = await one.delete(f"{MEMBERS}/two")
    assert unknown.status == 404
    assert (await unknown.json())["error"]["code"] == "NOT_FOUND"
    itself = await one.delete(f"{MEMBERS}/one")
    assert itself.status == 409
    assert (await itself.json())["error"]["details"] == {"name": "one", "state": "alive"}

    # A node that stops gracefully is left at once.
    await cluster.start("three")
    assert (await next_member_event(ws))["node"] == "three"
    await cluster.nodes["three"].aclose()
    left = await next_member_event(ws)
    assert (left["node"], left["previous"], left["state"]) == ("three", "alive", "left")
    await ws.close()

    said = [r.getMessage() for r in caplog.records if r.name == "caxton.cluster.membership"]
    for line in (
        "member two joined (alive)",
        "member two is suspect (was alive)",
        "member two is dead (was suspect)",
        "member two removed",
        "member three is left (was alive)",
    ):
        assert said.count(line) == 1, (line, said)


async def test_without_cluster_enabled_this_node_is_alone(tmp_path: Path) -> None:
    config = Config(coordination=CoordinationConfig(local_state_path=tmp_path / "local.db"))
    node = Node(config)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(node)))
    await client.start_server()
    try:
        await node.start()
        body = await members(client)
        assert body["cluster_enabled"] is False
        assert body["total"] == 1
        (alone,) = body["members"]
        assert alone["name"] == body["node"] == node.storage.node_id
        assert (alone["state"], alone["self"], alone["cluster_address"]) == ("alive", True, None)
        assert alone["api_address"] == str(config.networking.bind_address)
        answer = await client.delete(f"{MEMBERS}/anyone")
        assert answer.status == 404
        error = (await answer.json())["error"]
        assert error["code"] == "NOT_FOUND"
        assert "cluster_enabled is false" in error["message"]
        table = await cli_run(client, "members")
        assert table.exit_code == 0, table.output
        assert "not in a cluster" in table.output
    finally:
        await client.close()
        await node.aclose()


class _NoEcho(ClusterLink):
    """A link whose NATS client does not receive what it publishes itself."""

    def _connect_options(self) -> dict[str, Any]:
        return super()._connect_options() | {"no_echo": True}


async def test_not_joined_until_the_node_hears_its_own_heartbeat(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    deaf = _NoEcho(coordination(local_state_path=tmp_path / "deaf" / "local.db"))
    try:
        await deaf.start()
        assert deaf.client.is_connected
        why = "this node has not heard its own heartbeat back through NATS yet"
        assert deaf.not_joined() == why
        assert "has not heard its own heartbeat back through NATS within" in caplog.text
    finally:
        await deaf.aclose()

    keys = coordination(local_state_path=tmp_path / "ok" / "local.db", probe_interval=P)
    link = ClusterLink(keys)
    try:
        await link.start()  # waits until its first heartbeat came back
        assert link.membership.heard_self
        assert link.not_joined() is None
        stop = link.membership._unsubscribe[0]  # its heartbeat subscription breaks
        await stop()

        async def not_joined() -> str | None:
            return link.not_joined()

        why = await eventually(not_joined, 5, what="a node deaf to its heartbeats is not joined")
        assert why.startswith("this node has not heard its last ")
        assert why.endswith(" heartbeats back through NATS (its subscription is broken)")
    finally:
        await link.aclose()
