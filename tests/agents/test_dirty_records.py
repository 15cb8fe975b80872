"""State changes the runtime makes on its own reach the store soon, every time.

The runtime's events mark the agent in `DirtyAgents`, which the agent service's writer waits
on; both are handed the same object when the node is wired. The periodic pass that writes
every agent is set an hour apart here, so only the marks can have written these records.
"""

from __future__ import annotations

import pytest

from caxton.agents import DeployRequest
from caxton.agents import service as service_module
from caxton.node import Node
from tests.support import eventually, example

from .conftest import Client, StartNode


async def stored_state(node: Node, name: str) -> str | None:
    record = await node.storage.agents.get(name)
    return None if record is None else record.state


async def test_every_runtime_state_change_is_written_without_the_periodic_pass(
    start_node: StartNode, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "COUNTER_FLUSH_INTERVAL", 3600.0)
    node = await start_node()
    await node.agents.deploy(DeployRequest(name="counter", wasm=example("counter")))
    for round_ in range(3):  # the second and later marks too, not only the first
        await client.ask(node, "counter", {})
        await eventually(lambda: _is(node, "running"), within=3.0)
        assert await node.runtime.hibernate("counter"), round_
        await eventually(lambda: _is(node, "hibernated"), within=3.0)


async def _is(node: Node, state: str) -> bool:
    return await stored_state(node, "counter") == state
