"""Run by test_restart: start a node, deploy agents, say "ready", then wait to be killed."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from caxton.agents import DeployRequest
from caxton.node import Node
from tests.agents.conftest import Client, node_config
from tests.support import example


async def main(data_dir: Path) -> None:
    client = Client()
    node = client.attach(Node(node_config(data_dir)))
    await node.start()
    await node.agents.deploy(DeployRequest(name="echo", wasm=example("echo")))
    await node.agents.deploy(DeployRequest(name="counter", wasm=example("counter")))
    await node.agents.deploy(DeployRequest(name="shout", wasm=example("shout")))
    counts = [await client.ask(node, "counter", {}) for _ in range(3)]
    # kv writes are group-committed asynchronously (their durability is tied to the message's
    # handled mark, see docs/messaging.md); these asks bypass messaging, so wait for the commit.
    await node.storage.write(lambda conn: None)
    print(json.dumps({"ready": True, "counts": counts}), flush=True)
    await asyncio.Event().wait()  # until the test kills this process


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
