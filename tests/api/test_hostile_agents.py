"""Hostile agents in a real node: each misbehaviour fails its own message, never the node."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from caxton.agents import DeployRequest
from caxton.api.app import create_app
from caxton.config import Config, CoordinationConfig, RuntimeConfig
from caxton.node import Node
from tests.support import eventually, wat

MB = 1024 * 1024


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Node, TestClient[Any, Any]]]:
    config = Config(
        runtime=RuntimeConfig(
            max_concurrent_executions=2,
            execution_timeout=0.5,
            agent_startup_timeout=0.5,
            agent_shutdown_timeout=2.0,
            wasm_memory_limit=16 * MB,
            gc_interval=3600.0,
        ),
        coordination=CoordinationConfig(local_state_path=tmp_path / "local.db"),
    )
    node = Node(config)
    await node.start()
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(node)))
    await client.start_server()
    try:
        yield node, client
    finally:
        await client.close()
        await node.aclose()


async def _dead_letter_for(node: Node, message_id: str, within: float = 5.0) -> Any:
    async def stored() -> Any:
        letters, _ = await node.messaging.dead_letters(limit=1000)
        return next((letter for letter in letters if letter.message_id == message_id), None)

    return await eventually(stored, within, what=f"a dead letter for {message_id}")


@pytest.mark.parametrize(
    ("fixture", "cause"),
    [
        pytest.param("spin", "deadline", id="infinite-loop"),
        pytest.param("membomb", "memory_limit", id="memory-bomb"),
        pytest.param("recursion", "stack_overflow", id="deep-recursion"),
        pytest.param("trap", "trap", id="unreachable"),
        pytest.param("fail", "returned_error", id="returns-non-zero"),
    ],
)
async def test_a_hostile_message_fails_alone(
    setup: tuple[Node, TestClient[Any, Any]], fixture: str, cause: str
) -> None:
    node, client = setup
    await node.agents.deploy(DeployRequest(name="bad", wasm=wat(fixture)))
    await node.agents.deploy(DeployRequest(name="echo", wasm=wat("echo")))

    bad = await node.messaging.submit(
        {"receiver": "bad", "performative": "request", "content": 1, "reply_with": "r1"},
        client="tester",
        wait=True,
    )
    # While the bad agent misbehaves, the node and other agents keep answering.
    started = time.perf_counter()
    assert (await client.get("/health")).status == 200
    assert time.perf_counter() - started < 0.25
    good = await node.messaging.submit(
        {"receiver": "echo", "performative": "request", "content": "hi"},
        client="tester",
        wait=True,
    )
    assert good.reply is not None
    assert (await good.reply.wait(5.0)) is not None

    letter = await _dead_letter_for(node, bad.message_id)
    assert letter.reason == "handler_failed"
    assert letter.details["cause"] == cause
    assert bad.reply is not None
    failure = await bad.reply.wait(5.0)
    assert failure is not None
    assert failure["performative"] == "failure"
    assert failure["in_reply_to"] == "r1"

    show = await (await client.get("/api/v1/agents/bad")).json()
    assert show["counters"]["failures"] >= 1
    assert show["last_error"]
    assert show["state"] in ("running", "loaded")


async def test_huge_log_output_is_bounded(setup: tuple[Node, TestClient[Any, Any]]) -> None:
    node, client = setup
    await node.agents.deploy(DeployRequest(name="noisy", wasm=wat("logspam")))
    for _ in range(3):
        await node.messaging.submit({"receiver": "noisy", "performative": "inform"}, client="t")

    async def handled() -> bool:
        return node.runtime.agent_statistics("noisy").messages_handled == 3

    await eventually(handled, what="noisy handled its 3 messages")
    logs = await (await client.get("/api/v1/agents/noisy/logs?n=1000")).json()
    total = sum(len(line["text"]) for line in logs["lines"])
    assert total <= 3 * 64 * 1024 + 4096
    assert (await client.get("/health")).status == 200


async def test_repeated_failures_exhaust_the_restart_budget(
    setup: tuple[Node, TestClient[Any, Any]],
) -> None:
    node, client = setup
    await node.agents.deploy(DeployRequest(name="crashy", wasm=wat("trap")))
    for i in range(8):
        await node.messaging.submit(
            {"receiver": "crashy", "performative": "inform", "content": i}, client="t"
        )

    async def state() -> str | None:
        found: str = (await (await client.get("/api/v1/agents/crashy")).json())["state"]
        return found if found == "failed" else None

    assert await eventually(state, what="crashy failed") == "failed"
    started = await client.post("/api/v1/agents/crashy/start")
    assert started.status == 200
    assert (await started.json())["state"] in ("running", "loaded")
