"""What becomes of the messages queued at the losing copy of a conflict, and `caxton cluster
conflicts`.

``bravo`` deploys ``twin`` alone first; ``alpha`` (a cluster of one, its seed ``bravo`` not up
yet) deploys a slow ``twin`` of its own and queues messages for it. When ``bravo`` starts the
two meet: bravo's copy wins (deployed first), alpha stops its copy after the message in hand,
and the messages still queued there stay queued (docs/cluster.md, "Conflicts"): not handled,
not sent to the winner, not dead-lettered. New messages for the name go to the winner. When
the operator removes the losing copy its queued messages become dead letters on alpha, which
can be redriven (from any node) to the winner: none is lost.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import aiohttp
from click.testing import CliRunner, Result

from caxton.cli import cli
from caxton.config import Config
from caxton.server import Server
from tests.cluster.conftest import server_config
from tests.nodeproc import free_port
from tests.support import eventually, example, fast_runtime, wat

#: Messages queued for alpha's slow copy (each takes it about 0.1-0.2 s; under the mailbox
#: capacity of 64).
QUEUED = 60


def config(tmp_path: Path, name: str, port: int, seeds: tuple[int, ...]) -> Config:
    made = server_config(tmp_path, name, port, seeds)
    return dataclasses.replace(made, runtime=fast_runtime(execution_timeout=10.0))


def url(server: Server, path: str) -> str:
    return f"http://{server.config.networking.bind_address}{path}"


def conflicts_cli(server: Server, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["cluster", "conflicts", *args], env={"CAXTON_SERVER": url(server, "")}
    )


async def call(
    http: aiohttp.ClientSession, method: str, address: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, address, json=body) as response:
        return response.status, (await response.json()) if response.status != 204 else None


async def test_messages_queued_at_the_losing_copy_wait_and_are_dead_lettered_on_removal(
    tmp_path: Path,
) -> None:
    ports = free_port(), free_port()
    twin = {"name": "twin", "wasm": base64.b64encode(example("echo")).decode()}
    async with aiohttp.ClientSession() as http:
        bravo = Server(config(tmp_path, "bravo", ports[1], ()))
        await bravo.start()
        try:
            status, body = await call(http, "POST", url(bravo, "/api/v1/agents"), twin)
            assert status == 201, body
        finally:
            await bravo.aclose()

        alpha = Server(config(tmp_path, "alpha", ports[0], ports))
        bravo = Server(config(tmp_path, "bravo", ports[1], ports))
        await alpha.start()
        try:
            slow = {"name": "twin", "wasm": base64.b64encode(wat("slow")).decode()}
            status, body = await call(http, "POST", url(alpha, "/api/v1/agents"), slow)
            assert (status, body.get("node")) == (201, "alpha"), body
            batch = [
                {"receiver": "twin", "performative": "inform", "sender": "tester", "content": i}
                for i in range(QUEUED)
            ]
            status, body = await call(http, "POST", url(alpha, "/api/v1/messages"), batch)
            assert status == 202, body

            # Nothing to report yet.
            result = await asyncio.to_thread(conflicts_cli, alpha)
            assert (result.exit_code, result.output) == (0, "no conflicts\n")

            await bravo.start()
            try:
                await _settled_and_reported(http, alpha, bravo)
                await _queued_messages_wait_then_are_dead_letters(http, alpha, bravo)
            finally:
                await bravo.aclose()
        finally:
            await alpha.aclose()


async def _settled_and_reported(http: aiohttp.ClientSession, alpha: Server, bravo: Server) -> None:
    async def stopped() -> bool:
        return (await alpha.node.agents.get("twin")).state == "stopped"

    await eventually(stopped, 10, what="alpha stops its copy of twin")

    async def reported() -> list[dict[str, Any]] | None:
        status, body = await call(http, "GET", url(alpha, "/api/v1/cluster/conflicts"))
        assert status == 200, body
        found: list[dict[str, Any]] = body["conflicts"]
        return found if found and found[0]["action"] == "stopped (kept stored)" else None

    (conflict,) = await eventually(reported, 10, what="alpha reports the conflict")
    result = await asyncio.to_thread(conflicts_cli, alpha)
    assert result.exit_code == 0, result.output
    header, _, row = result.output.splitlines()
    assert header.split() == [
        "NAME",
        "WINNER",
        "LOSER",
        "WINNER",
        "DEPLOYED",
        "LOSER",
        "DEPLOYED",
        "SEEN",
        "ACTION",
    ]
    # the times are two words each (date and time)
    words = row.split()
    assert words[:3] == ["twin", "bravo", "alpha"]
    assert " ".join(words[9:]) == "stopped (kept stored)"
    result = await asyncio.to_thread(conflicts_cli, alpha, "--output", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"conflicts": [conflict]}


async def _queued_messages_wait_then_are_dead_letters(
    http: aiohttp.ClientSession, alpha: Server, bravo: Server
) -> None:
    status, info = await call(http, "GET", url(alpha, "/api/v1/agents/twin?node=alpha"))
    assert (status, info["state"]) == (200, "stopped"), info
    handled, queued = info["counters"]["messages_handled"], info["mailbox_depth"]
    assert handled + queued == QUEUED, info
    assert queued > 0, "the copy was stopped with nothing queued: the test proves nothing"
    await asyncio.sleep(0.5)  # stopped: nothing more is handled, and nothing dead-lettered
    status, info = await call(http, "GET", url(alpha, "/api/v1/agents/twin?node=alpha"))
    assert (info["counters"]["messages_handled"], info["mailbox_depth"]) == (handled, queued)
    assert (await alpha.node.messaging.dead_letters(offset=0, limit=10))[1] == 0

    # A new message for the name goes to the winner, from either node.
    new = {"receiver": "twin", "performative": "inform", "sender": "tester", "content": "new"}
    status, body = await call(http, "POST", url(alpha, "/api/v1/messages"), new)
    assert status == 202, body

    async def winner_handled(count: int) -> bool:
        return bravo.node.runtime.agent_statistics("twin").messages_handled == count

    await eventually(lambda: winner_handled(1), 10, what="the winner handles the new message")

    # Removing the losing copy turns what was queued there into dead letters on alpha.
    status, body = await call(http, "DELETE", url(bravo, "/api/v1/agents/twin?node=alpha"))
    assert status == 204, body

    async def letters() -> list[dict[str, Any]] | None:
        status, body = await call(http, "GET", url(bravo, "/api/v1/dead-letters?limit=1000"))
        assert status == 200, body
        found = [d for d in body["dead_letters"] if d["receiver"] == "twin"]
        return found if len(found) >= queued else None

    found = await eventually(letters, 10, what="the queued messages are dead letters")
    assert len(found) == queued
    assert {(d["node"], d["reason"], d["details"].get("state")) for d in found} == {
        ("alpha", "agent_not_running", "removed")
    }
    assert sorted(d["message"]["content"] for d in found) == list(range(handled, QUEUED))
    assert bravo.node.runtime.agent_statistics("twin").messages_handled == 1

    # Redriven from any node, a dead letter of alpha reaches the winner.
    first = found[0]["id"]
    address = url(bravo, f"/api/v1/dead-letters/{first}/redrive?node=alpha")
    status, body = await call(http, "POST", address)
    assert status == 202, body
    await eventually(lambda: winner_handled(2), 10, what="the winner handles the redriven one")
