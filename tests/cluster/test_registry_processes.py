"""The registry across real `caxton serve` processes (each with its nats-server child).

An agent deployed on one node is listed by the other; after ``kill -9`` of its node it stays
listed with that node ``dead``; once the node is back (a new incarnation) it is listed from
the new run and answers through the other node again.
"""

from __future__ import annotations

import base64
import json
import signal
import urllib.request
from pathlib import Path
from typing import Any

from tests.nodeproc import NodeProcess, free_port, write_config
from tests.support import example, wait_until


def _node(directory: Path, name: str, port: int, seeds: tuple[int, ...]) -> Path:
    listed = ", ".join(f'"127.0.0.1:{seed}"' for seed in seeds)
    directory.mkdir(parents=True, exist_ok=True)
    return write_config(
        directory,
        coordination=f'cluster_enabled = true\nbind_addr = "127.0.0.1:{port}"\n'
        f'seeds = [{listed}]\nprobe_interval = "200ms"\ngossip_interval = "100ms"\n'
        f'node_name = "{name}"',
        log_level="info",
    )


def _json(node: NodeProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(node.url("api", path), data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _listed(node: NodeProcess, name: str) -> dict[str, Any] | None:
    status, page = _json(node, "GET", "/api/v1/agents")
    assert status == 200, page
    return next((agent for agent in page["agents"] if agent["name"] == name), None)


def test_a_dead_node_s_agents_stay_listed_and_its_restart_replaces_them(tmp_path: Path) -> None:
    ports = free_port(), free_port()
    a_config = _node(tmp_path / "a", "a", ports[0], ports)
    b_config = _node(tmp_path / "b", "b", ports[1], ports)
    with NodeProcess(a_config).start() as a, NodeProcess(b_config).start() as b:
        deploy = {"name": "echo", "wasm": base64.b64encode(example("echo")).decode()}
        status, body = _json(a, "POST", "/api/v1/agents", deploy)
        assert status == 201, body

        def on_a(state: str) -> bool:
            seen = _listed(b, "echo")
            return seen is not None and (seen["node"], seen["node_state"]) == ("a", state)

        wait_until(lambda: on_a("alive"), 10, what="b lists echo on a")
        status, body = _json(b, "POST", "/api/v1/agents/echo/stop")
        assert (status, body["state"], body["node"]) == (200, "stopped", "a")
        a.stop(signal.SIGKILL)
        wait_until(lambda: on_a("dead"), 10, what="echo stays listed, a dead")
        status, body = _json(b, "GET", "/api/v1/agents/echo")
        assert (status, body["error"]["code"], body["error"]["details"]["node"]) == (
            503,
            "UNAVAILABLE",
            "a",
        )
        status, body = _json(b, "POST", "/api/v1/agents", deploy)
        assert (status, body["error"]["code"]) == (409, "AGENT_ALREADY_EXISTS")
        a.start()
        wait_until(lambda: on_a("alive"), 10, what="a is back and listed again")
        listed = _listed(b, "echo")
        assert listed is not None
        assert listed["state"] == "stopped"  # as it was stored
        status, body = _json(b, "POST", "/api/v1/agents/echo/start")
        assert (status, body["state"], body["node"]) == (200, "running", "a")
