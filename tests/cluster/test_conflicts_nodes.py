"""A name deployed on two nodes that could not see each other is settled when they meet.

Each node first runs alone (its own one-node cluster) and deploys ``twin``; then both start
with each other as seeds: the copy deployed first wins everywhere, the other node stops its copy
and keeps it, and both report the conflict (`GET /api/v1/cluster/conflicts`, the event stream).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import aiohttp

from caxton.config import Config
from caxton.server import Server
from tests.cluster.conftest import server_config
from tests.nodeproc import free_port
from tests.support import eventually, example, next_event


async def _deploy_alone(config: Config, http: aiohttp.ClientSession) -> None:
    server = Server(config)
    await server.start()
    try:
        body = {"name": "twin", "wasm": base64.b64encode(example("echo")).decode()}
        url = f"http://{config.networking.bind_address}/api/v1/agents"
        async with http.post(url, json=body) as response:
            assert response.status == 201, await response.text()
    finally:
        await server.aclose()


async def test_the_first_deploy_wins_and_the_other_copy_is_stopped_and_reported(
    tmp_path: Path,
) -> None:
    ports = free_port(), free_port()
    async with aiohttp.ClientSession() as http:
        await _deploy_alone(server_config(tmp_path, "bravo", ports[1], ()), http)  # first
        await _deploy_alone(server_config(tmp_path, "alpha", ports[0], ()), http)
        alpha = Server(server_config(tmp_path, "alpha", ports[0], ports))
        bravo = Server(server_config(tmp_path, "bravo", ports[1], ports))
        await alpha.start()
        try:
            api = f"http://{alpha.config.networking.bind_address}"
            async with http.ws_connect(f"{api}/api/v1/events?agent=twin") as ws:
                await next_event(ws, "subscribed")
                await bravo.start()
                try:
                    event = await next_event(ws, "conflict")
                    assert (event["name"], event["winner"], event["loser"]) == (
                        "twin",
                        "bravo",
                        "alpha",
                    )

                    async def stopped() -> bool:
                        info = await alpha.node.agents.get("twin")
                        return info.state == "stopped"

                    await eventually(stopped, 5, what="alpha stops its copy")
                    for server in (alpha, bravo):
                        assert server.node.cluster is not None
                        assert server.node.cluster.directory.owner("twin") == "bravo"
                    bravo_api = f"http://{bravo.config.networking.bind_address}"

                    async def reported() -> bool:
                        async with http.get(f"{bravo_api}/api/v1/cluster/conflicts") as r:
                            found = (await r.json())["conflicts"]
                        return bool(found)

                    await eventually(reported, 5, what="bravo reports the conflict")

                    async def settled() -> dict[str, Any] | None:
                        # the action is recorded once the stop call returns, a moment after
                        # the agent's state shows "stopped"
                        async with http.get(f"{api}/api/v1/cluster/conflicts") as response:
                            (found,) = (await response.json())["conflicts"]
                        return None if found["action"] == "stopping" else found

                    conflict = await eventually(settled, 5, what="alpha records its stop")
                    assert conflict["action"] == "stopped (kept stored)"
                    assert conflict["winner_deployed_at"] < conflict["loser_deployed_at"]
                    # the loser's copy is still stored, and reached with ?node=
                    async with http.get(f"{bravo_api}/api/v1/agents/twin?node=alpha") as r:
                        assert r.status == 200, await r.text()
                        assert (await r.json())["node"] == "alpha"
                    async with http.get(f"{api}/api/v1/agents/twin") as r:
                        assert (await r.json())["node"] == "alpha"  # the local copy
                finally:
                    await bravo.aclose()
        finally:
            await alpha.aclose()
