"""A `Node` with ``cluster_enabled`` holds a `ClusterLink`; without it, nothing of the cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from caxton.api.app import create_app
from caxton.config import Config, CoordinationConfig
from caxton.node import Node
from tests.nodeproc import free_port
from tests.support import eventually

from .conftest import alive, coordination


async def test_ready_waits_for_every_join_check(tmp_path: Path) -> None:
    config = coordination(local_state_path=tmp_path / "local.db")
    node = Node(Config(coordination=config))
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(node)))
    await client.start_server()
    try:
        await node.start()
        link = node.cluster
        assert link is not None
        assert link.client.is_connected
        assert link.server is not None
        assert link.server.up
        pid = link.server.pid
        assert pid is not None
        answer = await client.get("/ready")
        assert answer.status == 200
        assert (await answer.json())["checks"]["cluster"] is True

        waiting = ["membership: no heartbeat from the cluster yet"]
        link.add_join_check(lambda: waiting[0] if waiting else None)  # membership's hook
        answer = await client.get("/ready")
        assert answer.status == 503
        error = (await answer.json())["error"]
        assert error["details"]["checks"]["cluster"] is False
        reason = "not joined: membership: no heartbeat from the cluster yet"
        assert error["details"]["reasons"]["cluster"] == reason
        assert node.readiness().details["cluster"] == reason
        waiting.clear()
        assert (await client.get("/ready")).status == 200
        status = await link.status()
        assert status["node_name"] == link.name
        assert status["nats_server_pid"] == pid
        assert status["routes"] == 0
        [me] = status["members"]  # alone: this node, alive since it started
        assert me["name"] == link.name
        assert me["state"] == "alive"
        assert me["incarnation"] == link.membership.incarnation
        assert me["since"] <= time.time()
    finally:
        await client.close()
        await node.aclose()
    assert node.cluster is None
    assert not alive(pid)


async def test_without_cluster_enabled_the_checks_are_unchanged(tmp_path: Path) -> None:
    node = Node(Config(coordination=CoordinationConfig(local_state_path=tmp_path / "local.db")))
    await node.start()
    try:
        assert node.cluster is None
        readiness = node.readiness()
        assert readiness.ready
        assert readiness.as_dict() == {"storage": True, "runtime": True, "started": True}
    finally:
        await node.aclose()
    assert not (tmp_path / "nats").exists()


SINGLE_NODE = """
import asyncio, json, sys
from pathlib import Path
from caxton.config import Config, CoordinationConfig
from caxton.node import Node

async def main() -> None:
    node = Node(Config(coordination=CoordinationConfig(local_state_path=Path(sys.argv[1]))))
    await node.start()
    await node.aclose()

asyncio.run(main())
print(json.dumps(sorted(m for m in sys.modules if m == "nats" or m.startswith("caxton.cluster"))))
"""


def test_a_single_node_imports_nothing_of_the_cluster(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SINGLE_NODE, str(tmp_path / "local.db")],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout.splitlines()[-1]) == []


async def test_two_nodes_see_each_other_and_a_stopped_one_left(tmp_path: Path) -> None:
    port = free_port()

    def node(name: str, listen: int | None) -> Node:
        keys = coordination(
            listen,
            (port,),
            node_name=name,
            local_state_path=tmp_path / name / "local.db",
            probe_interval=0.2,
        )
        return Node(Config(coordination=keys))

    one, two = node("one", port), node("two", None)
    try:
        await one.start()
        await two.start()
        assert one.cluster is not None
        assert two.cluster is not None
        first, second = one.cluster.membership, two.cluster.membership

        async def both_alive() -> bool:
            views = [{m.name: m.state for m in ms.members()} for ms in (first, second)]
            return all(view == {"one": "alive", "two": "alive"} for view in views)

        await eventually(both_alive, 10, what="each node sees the other alive")
        await two.aclose()

        async def two_left() -> bool:
            peer = first.get("two")
            return peer is not None and peer.state == "left"

        await eventually(two_left, 2, what="a stopped node is left at once")
    finally:
        await two.aclose()
        await one.aclose()
