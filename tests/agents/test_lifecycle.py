"""Upgrade, rollback, stop/start, failure and removal, as the store and the runtime see them."""

from __future__ import annotations

import pytest

from caxton.agents import DeployRequest
from caxton.errors import AgentNotFound, AgentStartFailed, InvalidWasm
from caxton.node import Node
from tests.support import eventually, example, message, wat

from .conftest import Client


async def wait_for_state(node: Node, name: str, state: str) -> None:
    async def reached() -> bool:
        return (await node.agents.get(name)).state == state

    await eventually(reached)


async def test_upgrade_and_rollback(node: Node, client: Client) -> None:
    agents = node.agents
    await agents.deploy(DeployRequest(name="svc", wasm=example("echo")))
    assert await client.ask(node, "svc", "x") == "x"
    info = await agents.upgrade("svc", example("counter"))
    assert (info.version, info.versions, info.state) == (2, (1, 2), "running")
    assert await client.ask(node, "svc", {}) == {"memory_count": 1, "kv_count": 1}
    stored = await node.storage.agents.get("svc")
    assert stored is not None
    assert stored.current_version == 2
    info = await agents.rollback("svc", 1)
    assert (info.version, info.module_sha256) == (1, (await agents.get("svc")).module_sha256)
    assert await client.ask(node, "svc", "back") == "back"
    stored = await node.storage.agents.get("svc")
    assert stored is not None
    assert stored.current_version == 1
    with pytest.raises(AgentNotFound, match="no version 9"):
        await agents.rollback("svc", 9)
    assert agents.statistics().upgrades == 1
    assert agents.statistics().rollbacks == 1


async def test_a_bad_upgrade_leaves_the_old_version_running(node: Node, client: Client) -> None:
    agents = node.agents
    await agents.deploy(DeployRequest(name="svc", wasm=example("echo")))
    with pytest.raises(InvalidWasm):
        await agents.upgrade("svc", b"\0asm garbage")
    with pytest.raises(AgentStartFailed):
        await agents.upgrade("svc", wat("init_fail"))
    info = await agents.get("svc")
    assert (info.version, info.versions, info.state) == (1, (1,), "running")
    assert [v.version for v in await node.storage.agents.versions("svc")] == [1]
    assert await client.ask(node, "svc", "still") == "still"


async def test_stop_and_start(node: Node, client: Client) -> None:
    await node.agents.deploy(DeployRequest(name="counter", wasm=example("counter")))
    assert await client.ask(node, "counter", {}) == {"memory_count": 1, "kv_count": 1}
    info = await node.agents.stop("counter")
    assert info.state == "stopped"
    assert info.memory_bytes == 0
    stored = await node.storage.agents.get("counter")
    assert stored is not None
    assert (stored.state, stored.messages_handled) == ("stopped", 1)
    info = await node.agents.start("counter")
    assert info.state == "running"
    # a fresh instance: memory starts over, kv goes on
    assert await client.ask(node, "counter", {}) == {"memory_count": 1, "kv_count": 2}
    assert (await node.agents.start("counter")).state == "running"  # no-op


async def test_a_failing_agent_becomes_failed_persisted_and_start_recovers(node: Node) -> None:
    await node.agents.deploy(DeployRequest(name="trap", wasm=wat("trap")))
    for _ in range(8):
        try:
            await node.runtime.deliver("trap", message("trap"))
        except Exception:
            break
    await wait_for_state(node, "trap", "failed")
    info = await node.agents.get("trap")
    assert info.failures >= 6
    assert info.restarts == 5
    assert info.last_error

    async def persisted() -> bool:  # by the background writer, after the state-change event
        stored = await node.storage.agents.get("trap")
        return stored is not None and stored.state == "failed"

    await eventually(persisted)
    stored = await node.storage.agents.get("trap")
    assert stored is not None
    assert stored.failures == info.failures
    assert stored.last_error == info.last_error
    assert (await node.agents.start("trap")).state == "running"


async def test_remove_cleans_runtime_storage_and_logs(node: Node, client: Client) -> None:
    await node.agents.deploy(DeployRequest(name="counter", wasm=example("counter")))
    await client.ask(node, "counter", {})
    await node.runtime.hibernate("counter")
    # Snapshots are written behind (StoredSnapshots); wait for the writer before reading.
    await node.storage.write(lambda conn: None)
    assert await node.storage.snapshots.load("counter") is not None
    await node.agents.remove("counter")
    assert await node.storage.agents.get("counter") is None
    assert await node.storage.kv.load("counter") == {}
    assert await node.storage.snapshots.load("counter") is None
    assert node.runtime.agents() == []
    with pytest.raises(AgentNotFound):
        await node.agents.get("counter")
    with pytest.raises(AgentNotFound):
        node.agents.logs("counter")
    with pytest.raises(AgentNotFound):
        await node.agents.remove("counter")
    # the same name deploys again from scratch
    await node.agents.deploy(DeployRequest(name="counter", wasm=example("counter")))
    assert await client.ask(node, "counter", {}) == {"memory_count": 1, "kv_count": 1}


async def test_logs_statistics_and_metric_samples(node: Node, client: Client) -> None:
    await node.agents.deploy(DeployRequest(name="shout", wasm=example("shout")))
    await node.agents.deploy(DeployRequest(name="echo", wasm=example("echo")))
    assert await client.ask(node, "shout", "hi") == "HI"
    assert any("shout" in line.text for line in node.agents.logs("shout"))
    await node.agents.stop("echo")
    stats = node.agents.statistics()
    assert stats.by_state == {"running": 1, "stopped": 1}
    assert stats.deploys == 2
    samples = {(s[0], tuple(sorted(s[2].items()))): s[3] for s in node.agents.metric_samples()}
    assert samples[("agents_deployed", ())] == 2
    assert samples[("agents", (("state", "stopped"),))] == 1
    assert samples[("agent_executions", (("status", "ok"),))] == 1
    assert ("agent_execution_duration_seconds", ()) not in samples  # one name per metric:
    messaging = {(s[0], tuple(sorted(s[2].items()))): s[3] for s in node.messaging.metric_samples()}
    bounds, counts, total, count = messaging[("message_processing_duration_seconds", ())]
    assert len(bounds) == len(counts)
    assert count == 1
    assert total > 0
    for name in ("agents_active", "wasm_memory_usage_bytes", "agent_restarts"):
        assert (name, ()) in samples
    assert ("agent_hibernations", ()) in samples
