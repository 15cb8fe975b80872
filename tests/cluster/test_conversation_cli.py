"""`caxton conversation show` against a clustered server: the messages gathered from every
node, with a NODE column (the node that keeps each one), and the nodes that did not answer."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner, Result

from caxton.cli import cli
from caxton.server import Server
from tests.cluster.conftest import server_config
from tests.nodeproc import free_port
from tests.support import eventually, example


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Server, Server]]:
    ports = free_port(), free_port()
    one = Server(server_config(tmp_path, "one", ports[0], ports))
    two = Server(server_config(tmp_path, "two", ports[1], ports))
    await one.start()
    try:
        await two.start()
        try:
            yield one, two
        finally:
            await two.aclose()
    finally:
        await one.aclose()


def url(server: Server) -> str:
    return f"http://{server.config.networking.bind_address}"


def show(server: Server, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["conversation", "show", *args], env={"CAXTON_SERVER": url(server)}
    )


async def test_conversation_show_has_a_node_column_in_a_cluster(
    pair: tuple[Server, Server],
) -> None:
    one, two = pair
    async with aiohttp.ClientSession() as http:
        wasm = base64.b64encode(example("echo")).decode()
        body = {"name": "echo", "wasm": wasm, "node": "two"}
        async with http.post(f"{url(one)}/api/v1/agents", json=body) as response:
            assert response.status == 201, await response.text()

        async def placed() -> bool:
            link = one.node.cluster
            assert link is not None
            peer = link.membership.get("two")
            alive = peer is not None and peer.state == "alive"
            return alive and link.directory.owner("echo") == "two"

        await eventually(placed, 10, what="one sees two alive, hosting echo")
        message = {"receiver": "echo", "performative": "request", "content": "hi"}
        async with http.post(f"{url(one)}/api/v1/messages?wait=5s", json=message) as response:
            assert response.status == 200, await response.text()
            conversation = response.headers["X-Caxton-Conversation-Id"]

    result = await asyncio.to_thread(show, one, conversation)
    assert result.exit_code == 0, result.output
    header, _, *rows = [line.split() for line in result.output.splitlines()]
    assert header[:3] == ["#", "NODE", "TIME"]
    # the request is kept by the node that accepted it, the reply by the node of its sender
    assert [row[:2] for row in rows] == [["1", "one"], ["2", "two"]]
    assert [row[4] for row in rows] == [rows[0][4], "echo"]  # FROM (TIME is two words)
    result = await asyncio.to_thread(show, one, conversation, "--output", "json")
    page = json.loads(result.output)
    assert [m["node"] for m in page["messages"]] == ["one", "two"]
    assert page["missing_nodes"] == []

    # A node that does not answer in time is named under the table.
    remote_one, remote_two = one.node.cluster_messages, two.node.cluster_messages
    assert remote_one is not None
    assert remote_two is not None

    async def silent(payload: bytes) -> bytes:
        await asyncio.sleep(5)
        return b""

    remote_two.gather.answer = silent  # type: ignore[method-assign]
    remote_one.gather.timeout = 0.3
    result = await asyncio.to_thread(show, one, conversation)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[:2] for line in lines[2:-1]] == [["1", "one"]]
    assert lines[-1] == "not in this page (no answer in time): two"
