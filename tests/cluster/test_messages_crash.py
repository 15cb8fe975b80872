"""`kill -9` of a node process that accepted messages for an agent on another node before it
could forward them: after a restart, every one of them is delivered."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from caxton.agents import DeployRequest
from caxton.cluster.directory import FixedDirectory
from caxton.config import Config
from caxton.node import Node
from caxton.storage import Storage
from tests.nodeproc import free_port
from tests.support import ROOT, eventually, example, fast_runtime, wait_until

from .conftest import coordination

COUNT = 50

#: Node "a" alone (its peer "b" is down): accept COUNT messages for echo on "b", say so, wait.
ACCEPT = """
import asyncio, sys
from pathlib import Path
from caxton.cluster.directory import FixedDirectory
from caxton.config import Config, CoordinationConfig
from caxton.config.schema import Address
from caxton.node import Node
from caxton.storage import Storage

async def main() -> None:
    state = Path(sys.argv[1])
    port, peer, count = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    keys = CoordinationConfig(
        cluster_enabled=True, bind_addr=Address("127.0.0.1", port),
        seeds=(f"127.0.0.1:{peer}",), node_name="a", local_state_path=state, probe_interval=0.2,
    )
    node = Node(Config(coordination=keys))
    await node.start()
    node.cluster.directory = FixedDirectory({"echo": "b"})
    for i in range(count):
        await node.messaging.submit(
            {"receiver": "echo", "performative": "request", "content": i}, client="tester"
        )
    print("accepted", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_killed_node_delivers_what_it_accepted_after_a_restart(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    state_a = tmp_path / "a" / "local.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ACCEPT,
        str(state_a),
        str(port_a),
        str(port_b),
        str(COUNT),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT / "src")},
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 60)
        assert line.decode().strip() == "accepted"
        os.kill(child.pid, signal.SIGKILL)  # before it could forward anything (b is down)
        await asyncio.wait_for(child.wait(), 10)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    async with await Storage.open(state_a) as storage:  # every one is in a's outbox
        assert await storage.outbox.depth() == COUNT

    def node(name: str, listen: int) -> Node:
        keys = coordination(
            listen,
            (port_a, port_b),
            node_name=name,
            local_state_path=tmp_path / name / "local.db",
            probe_interval=0.2,
        )
        return Node(Config(coordination=keys, runtime=fast_runtime()))

    b = node("b", port_b)
    await b.start()
    a = node("a", port_a)
    try:
        await b.agents.deploy(DeployRequest(name="echo", wasm=example("echo")))
        assert b.cluster is not None
        b.cluster.directory = FixedDirectory({"echo": "b"})
        # a's outbox kept every accepted message across the kill; its forwarder starts with it.
        await wait_until_free(port_a)
        await a.start()
        assert a.cluster is not None
        a.cluster.directory = FixedDirectory({"echo": "b"})

        async def delivered() -> bool:
            return b.runtime.agent_statistics("echo").messages_handled == COUNT

        await eventually(delivered, 30, what=f"all {COUNT} delivered to echo on b")
        assert await a.storage.outbox.depth() == 0
    finally:
        await a.aclose()
        await b.aclose()


async def wait_until_free(port: int) -> None:
    """Until the killed node's nats-server (which dies with it) let go of ``port``."""

    def free() -> bool:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

    await asyncio.to_thread(wait_until, free, 10)
