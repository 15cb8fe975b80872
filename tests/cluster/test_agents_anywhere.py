"""The agents API from any node: two in-process servers, each with its real nats-server.

An agent deployed on one node is listed by the other with its node, and shown, stopped,
started, upgraded, rolled back, debugged and removed from there; a deploy can name its node
(or "auto"); a name that lives on another node cannot be deployed again; an owner that does
not answer is a 503 naming it.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from caxton.api.remote import AgentApiResponder
from caxton.cli import cli
from caxton.server import Server
from tests.cluster.conftest import server_config
from tests.nodeproc import free_port
from tests.support import eventually, example


class Pair:
    def __init__(self, one: Server, two: Server, http: aiohttp.ClientSession) -> None:
        self.servers = {"one": one, "two": two}
        self.http = http

    def url(self, node: str, path: str) -> str:
        address = self.servers[node].config.networking.bind_address
        return f"http://{address}{path}"

    async def call(self, node: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
        async with self.http.request(method, self.url(node, path), **kwargs) as response:
            body = await response.json() if response.content_type == "application/json" else None
            return response.status, body, response.headers

    async def listed(self, node: str, name: str, where: str) -> bool:
        status, body, _ = await self.call(node, "GET", "/api/v1/agents")
        return status == 200 and any(
            a["name"] == name and a["node"] == where for a in body["agents"]
        )


@pytest.fixture(params=[None, "the-cluster-secret"], ids=["no-secret", "secret"])
async def pair(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    """Two clustered nodes, without and with a cluster secret (every message signed)."""
    port_one, port_two = free_port(), free_port()
    seeds = (port_one, port_two)
    secret = request.param
    one = Server(server_config(tmp_path, "one", port_one, seeds, secret))
    two = Server(server_config(tmp_path, "two", port_two, seeds, secret))
    await one.start()
    try:
        await two.start()
        try:
            async with aiohttp.ClientSession() as http:
                pair = Pair(one, two, http)

                async def joined() -> bool:
                    views = [
                        {m.name: m.state for m in s.node.cluster.membership.members()}  # type: ignore[union-attr]
                        for s in (one, two)
                    ]
                    return all(v == {"one": "alive", "two": "alive"} for v in views)

                await eventually(joined, 10, what="both nodes alive")
                yield pair
        finally:
            await two.aclose()
    finally:
        await one.aclose()


def _deploy(name: str, module: str = "echo", **extra: Any) -> dict[str, Any]:
    return {"json": {"name": name, "wasm": base64.b64encode(example(module)).decode(), **extra}}


async def test_an_agent_on_one_node_is_listed_and_operated_from_the_other(pair: Pair) -> None:
    status, body, _ = await pair.call("one", "POST", "/api/v1/agents", **_deploy("echo"))
    assert status == 201, body
    assert body["node"] == "one"

    async def listed() -> bool:
        return await pair.listed("two", "echo", "one")

    await eventually(listed, 5, what="two lists echo on one")
    _, page, _ = await pair.call("two", "GET", "/api/v1/agents?node=one")
    (remote,) = page["agents"]
    assert {k: remote[k] for k in ("name", "node", "state", "version", "node_state")} == {
        "name": "echo",
        "node": "one",
        "state": "running",
        "version": 1,
        "node_state": "alive",
    }
    _, page, _ = await pair.call("two", "GET", "/api/v1/agents?node=two")
    assert page["agents"] == []
    assert page["total"] == 0

    status, shown, _ = await pair.call("two", "GET", "/api/v1/agents/echo")
    assert (status, shown["name"], shown["node"], shown["module_sha256"]) == (
        200,
        "echo",
        "one",
        shown["module_sha256"],
    )
    status, here, _ = await pair.call("one", "GET", "/api/v1/agents/echo?node=one")
    assert (status, here["node"]) == (200, "one")  # ?node= naming this node: handled here
    status, error, _ = await pair.call("one", "GET", "/api/v1/agents/echo?node=nowhere")
    assert (status, error["error"]["details"]) == (400, {"field": "node"})
    status, stopped, _ = await pair.call("two", "POST", "/api/v1/agents/echo/stop")
    assert (status, stopped["state"]) == (200, "stopped")
    status, started, _ = await pair.call("two", "POST", "/api/v1/agents/echo/start")
    assert (status, started["state"]) == (200, "running")
    upgrade = {"json": {"wasm": base64.b64encode(example("shout")).decode()}}
    status, upgraded, _ = await pair.call("two", "PUT", "/api/v1/agents/echo", **upgrade)
    assert (status, upgraded["version"]) == (200, 2)
    status, rolled, _ = await pair.call("two", "PUT", "/api/v1/agents/echo?version=1")
    assert (status, rolled["version"]) == (200, 1)
    raw = {"headers": {"Content-Type": "application/wasm"}, "data": example("echo")}
    status, again, _ = await pair.call("one", "PUT", "/api/v1/agents/echo?node=one", **raw)
    assert (status, again["version"]) == (200, 3)  # ?node= is not one of the raw form's settings
    status, rolled, _ = await pair.call("two", "PUT", "/api/v1/agents/echo?version=1&node=one")
    assert (status, rolled["version"]) == (200, 1)
    form = aiohttp.FormData()
    form.add_field("wasm", example("shout"), filename="shout.wasm")
    status, multi, _ = await pair.call("two", "PUT", "/api/v1/agents/echo", data=form)
    assert (status, multi["version"]) == (200, 4)  # the multipart body crosses as it came
    status, rolled, _ = await pair.call("two", "PUT", "/api/v1/agents/echo?version=1")
    assert (status, rolled["version"]) == (200, 1)
    status, logs, _ = await pair.call("two", "GET", "/api/v1/agents/echo/logs?n=5")
    assert (status, logs["name"]) == (200, "echo")
    status, debug, _ = await pair.call("two", "GET", "/api/v1/agents/echo/debug")
    assert (status, debug["name"], debug["state"]) == (200, "echo", "running")
    # bad input is still the owner's clear error
    status, error, _ = await pair.call("two", "GET", "/api/v1/agents/echo/logs?n=x")
    assert (status, error["error"]["code"]) == (400, "INVALID_REQUEST")
    # the name lives on one: two refuses a second one, with the duplicate's code
    status, error, _ = await pair.call("two", "POST", "/api/v1/agents", **_deploy("echo"))
    assert (status, error["error"]["code"]) == (409, "AGENT_ALREADY_EXISTS")
    assert error["error"]["details"]["node"] == "one"
    status, _, _ = await pair.call("two", "DELETE", "/api/v1/agents/echo")
    assert status == 204
    assert not pair.servers["one"].node.agents.hosts("echo")

    async def gone() -> bool:
        return pair.servers["two"].node.cluster.directory.owner("echo") is None  # type: ignore[union-attr]

    await eventually(gone, 5, what="two forgets echo")
    status, error, _ = await pair.call("two", "GET", "/api/v1/agents/echo")
    assert (status, error["error"]["code"]) == (404, "AGENT_NOT_FOUND")


async def test_a_deploy_goes_to_the_node_it_names_or_the_least_loaded(pair: Pair) -> None:
    status, body, headers = await pair.call(
        "one", "POST", "/api/v1/agents", **_deploy("placed", node="two")
    )
    assert (status, body["node"], headers["Location"]) == (201, "two", "/api/v1/agents/placed")
    assert pair.servers["two"].node.agents.hosts("placed")
    assert not pair.servers["one"].node.agents.hosts("placed")

    async def listed() -> bool:
        return await pair.listed("one", "placed", "two")

    await eventually(listed, 5, what="one lists placed on two")
    # two hosts one agent, one hosts none: auto picks one
    status, body, _ = await pair.call(
        "two", "POST", "/api/v1/agents", **_deploy("auto-placed", node="auto")
    )
    assert (status, body["node"]) == (201, "one")
    # multipart and raw forms carry the node too
    form = aiohttp.FormData()
    form.add_field("name", "multi")
    form.add_field("node", "two")
    form.add_field("wasm", example("echo"), filename="echo.wasm")
    status, body, _ = await pair.call("one", "POST", "/api/v1/agents", data=form)
    assert (status, body["node"]) == (201, "two")
    status, body, _ = await pair.call(
        "one",
        "POST",
        "/api/v1/agents?name=raw&node=two&env=A=1",
        data=example("echo"),
        headers={"Content-Type": "application/wasm"},
    )
    assert (status, body["node"], body["env"]) == (201, "two", {"A": "1"})
    status, error, _ = await pair.call(
        "one", "POST", "/api/v1/agents", **_deploy("x", node="nowhere")
    )
    assert (status, error["error"]["code"], error["error"]["details"]) == (
        400,
        "INVALID_REQUEST",
        {"field": "node"},
    )


async def test_an_owner_that_does_not_answer_is_a_503_naming_it(pair: Pair) -> None:
    status, _, _ = await pair.call("one", "POST", "/api/v1/agents", **_deploy("echo"))
    assert status == 201

    async def listed() -> bool:
        return await pair.listed("two", "echo", "one")

    await eventually(listed, 5, what="two lists echo on one")
    responder = pair.servers["one"]._responder
    assert responder is not None
    await responder.aclose()  # one no longer answers calls from the cluster
    status, error, _ = await pair.call("two", "POST", "/api/v1/agents/echo/stop")
    assert (status, error["error"]["code"]) == (503, "UNAVAILABLE")
    assert error["error"]["details"] == {"node": "one", "node_state": "alive"}
    assert "one" in error["error"]["message"]


async def test_a_call_waits_a_moment_for_a_live_owner_that_is_still_starting(pair: Pair) -> None:
    status, _, _ = await pair.call("one", "POST", "/api/v1/agents", **_deploy("echo"))
    assert status == 201

    async def listed() -> bool:
        return await pair.listed("two", "echo", "one")

    await eventually(listed, 5, what="two lists echo on one")
    one = pair.servers["one"]
    assert one._responder is not None
    await one._responder.aclose()  # one is alive but does not answer its API subject yet
    call = asyncio.create_task(pair.call("two", "POST", "/api/v1/agents/echo/stop"))
    await asyncio.sleep(0.3)
    assert not call.done()
    one._responder = AgentApiResponder(one.node)
    await one._responder.start()
    status, stopped, _ = await call
    assert (status, stopped["state"]) == (200, "stopped")


def _cli(server: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["agent", *args], env={"CAXTON_SERVER": server})


async def test_the_cli_lists_with_a_node_column_and_deploys_on_a_node(
    pair: Pair, tmp_path: Path
) -> None:
    module = tmp_path / "echo.wasm"
    module.write_bytes(example("echo"))
    one, two = (pair.url(node, "") for node in ("one", "two"))
    result = await asyncio.to_thread(
        _cli, one, "deploy", str(module), "--name", "far", "--node", "two"
    )
    assert result.exit_code == 0, result.output
    assert pair.servers["two"].node.agents.hosts("far")
    result = await asyncio.to_thread(_cli, two, "deploy", str(module), "--name", "near")
    assert result.exit_code == 0, result.output

    async def listed() -> bool:
        return await pair.listed("one", "near", "two")

    await eventually(listed, 5, what="one lists near on two")
    result = await asyncio.to_thread(_cli, one, "list")
    assert result.exit_code == 0, result.output
    header, *rows = [line.split() for line in result.output.splitlines() if line.strip()]
    assert header[:3] == ["NAME", "NODE", "STATE"]
    assert [row[:3] for row in rows if row[0] in ("far", "near")] == [
        ["far", "two", "running"],
        ["near", "two", "running"],
    ]
    result = await asyncio.to_thread(_cli, one, "list", "--node", "one", "--output", "json")
    assert json.loads(result.output)["agents"] == []
    result = await asyncio.to_thread(_cli, one, "stop", "far")
    assert (result.exit_code, result.output.strip()) == (0, "far: stopped")
    result = await asyncio.to_thread(_cli, one, "show", "far", "--node", "two")
    assert "two" in result.output
    result = await asyncio.to_thread(_cli, one, "upgrade", "far", str(module), "--node", "two")
    assert (result.exit_code, result.output.strip()) == (0, "upgraded far: version 2, stopped")
    result = await asyncio.to_thread(_cli, one, "rollback", "far", "1", "--node", "two")
    assert (result.exit_code, result.output.strip()) == (0, "rolled back far: version 1, stopped")


async def test_registry_metrics_are_scraped_from_every_node(pair: Pair) -> None:
    status, _, _ = await pair.call("one", "POST", "/api/v1/agents", **_deploy("echo"))
    assert status == 201

    async def listed() -> bool:
        return await pair.listed("two", "echo", "one")

    await eventually(listed, 5, what="two lists echo on one")
    metrics = pair.servers["two"].config.networking.metrics_address
    async with pair.http.get(f"http://{metrics}/metrics") as response:
        text = await response.text()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("caxton_cluster_registry_entries", (("node", "one"),))] == 1
    assert samples[("caxton_cluster_registry_entries", (("node", "two"),))] == 0
    assert samples[("caxton_cluster_registry_conflicts_total", ())] == 0
    assert samples[("caxton_cluster_registry_pulls_total", (("outcome", "ok"),))] >= 1
    assert ("caxton_cluster_registry_announcements_total", (("direction", "received"),)) in samples


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _padded(module: bytes, size: int) -> bytes:
    """``module`` with a custom section that makes it about ``size`` bytes (still valid)."""
    name = b"padding"
    content = _leb(len(name)) + name + bytes(size)
    return module + b"\x00" + _leb(len(content)) + content


async def test_a_module_larger_than_one_nats_message_crosses_in_parts(pair: Pair) -> None:
    big = _padded(example("shout"), 1_300_000)  # above the 1 MiB NATS message
    raw = {"headers": {"Content-Type": "application/wasm"}, "data": big}
    status, body, _ = await pair.call("one", "POST", "/api/v1/agents?name=big&node=two", **raw)
    assert (status, body["node"], body["module_size"]) == (201, "two", len(big))

    async def listed() -> bool:
        return await pair.listed("one", "big", "two")

    await eventually(listed, 5, what="one lists big on two")
    bigger = _padded(example("echo"), 2_500_000)
    raw = {"headers": {"Content-Type": "application/wasm"}, "data": bigger}
    status, body, _ = await pair.call("one", "PUT", "/api/v1/agents/big", **raw)
    assert (status, body["version"], body["module_size"]) == (200, 2, len(bigger))


async def test_the_example_agents_are_deployed_once_in_a_cluster(tmp_path: Path) -> None:
    ports = free_port(), free_port()
    one = Server(server_config(tmp_path, "one", ports[0], ports), deploy_examples=True)
    two = Server(server_config(tmp_path, "two", ports[1], ports), deploy_examples=True)
    await one.start()
    try:
        await two.start()
        try:
            examples = set(one.node.agents.names())
            assert examples
            assert two.node.agents.names() == []  # one hosts them already
            assert two.node.cluster is not None
            assert two.node.cluster.registry is not None
            assert {two.node.cluster.directory.owner(name) for name in examples} == {"one"}
            assert two.node.cluster.registry.conflicts() == []
            assert two.node.readiness().cluster is True
        finally:
            await two.aclose()
    finally:
        await one.aclose()
