"""`AgentChanges`: every change to an agent reaches the listeners (the cluster's registry)."""

from __future__ import annotations

import pytest

from caxton.agents import DeployRequest
from caxton.errors import AgentAlreadyExists
from caxton.node import Node
from tests.support import eventually, example, message, wat


async def test_every_operation_and_runtime_state_change_is_told(node: Node) -> None:
    agents = node.agents
    heard: list[tuple[str, str | None, int | None]] = []

    def listener(name: str) -> None:
        summary = agents.summary(name)
        heard.append((name, *((summary.state, summary.version) if summary else (None, None))))

    agents.changes.add(listener)
    await agents.deploy(DeployRequest(name="svc", wasm=example("echo")))
    assert heard[-1] == ("svc", "running", 1)
    await agents.upgrade("svc", example("counter"))
    assert heard[-1] == ("svc", "running", 2)
    await agents.rollback("svc", 1)
    assert heard[-1] == ("svc", "running", 1)
    await agents.stop("svc")
    assert heard[-1] == ("svc", "stopped", 1)
    await agents.start("svc")
    assert heard[-1] == ("svc", "running", 1)
    summary = agents.summary("svc")
    assert summary is not None
    info = await agents.get("svc")
    assert summary.created_at == info.created_at
    await agents.remove("svc")
    assert agents.summary("svc") is None
    assert heard.pop()[0] == "svc"  # removed: no summary any more

    await agents.deploy(DeployRequest(name="trap", wasm=wat("trap")))
    for _ in range(8):
        try:
            await node.runtime.deliver("trap", message("trap"))
        except Exception:
            break

    async def failed() -> bool:  # the runtime's own state change, through PersistingEvents
        return ("trap", "failed", 1) in heard

    await eventually(failed)


async def test_a_name_hosted_elsewhere_is_refused_as_a_duplicate(node: Node) -> None:
    node.agents.hosted_elsewhere = lambda name: "other-node" if name == "taken" else None
    with pytest.raises(AgentAlreadyExists, match="on node 'other-node'") as caught:
        await node.agents.deploy(DeployRequest(name="taken", wasm=example("echo")))
    assert caught.value.details == {"name": "taken", "node": "other-node"}
    assert node.agents.names() == []
    await node.agents.deploy(DeployRequest(name="free", wasm=example("echo")))
