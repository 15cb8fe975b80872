"""/ready reflects the state store: a database file deleted or
corrupted under a running node turns it to 503 with the reason, and the error is logged once.

A real node (real SQLite file) behind the real app; the file is changed as an operator's
mistake or a failing disk would change it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from caxton.agents import DeployRequest
from caxton.api.admin import create_admin_app
from caxton.api.app import create_app
from caxton.config import Config, CoordinationConfig
from caxton.errors import StorageError
from caxton.node import Node
from caxton.observability.metrics import Metrics, render_metrics
from caxton.runtime import abi
from caxton.storage import Storage, _health
from tests.support import eventually, wat

Client = TestClient[Any, Any]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[Node, Client]]:
    node = Node(Config(coordination=CoordinationConfig(local_state_path=tmp_path / "local.db")))
    await node.start()
    client: Client = TestClient(TestServer(create_app(node)))
    await client.start_server()
    try:
        yield node, client
    finally:
        await client.close()
        await node.aclose()


async def not_ready(client: Client) -> dict[str, Any] | None:
    resp = await client.get("/ready")
    if resp.status == 200:
        return None
    assert resp.status == 503
    error: dict[str, Any] = (await resp.json())["error"]
    return error


def overwrite_header(path: Path) -> None:
    with open(path, "r+b") as file:
        file.write(b"\xde\xad\xbe\xef" * 25)


async def test_a_deleted_database_file_makes_the_node_unready(
    node: tuple[Node, Client], caplog: pytest.LogCaptureFixture
) -> None:
    n, client = node
    assert (await client.get("/ready")).status == 200
    with caplog.at_level(logging.ERROR, logger="caxton.storage"):
        os.unlink(n.storage.path)
        error = await eventually(lambda: not_ready(client))
        assert error["code"] == "UNAVAILABLE"
        assert error["details"]["checks"]["storage"] is False
        reason = error["details"]["reasons"]["storage"]
        assert "deleted" in reason
        assert "deleted" in error["message"]
        # /ready answers without a token: no filesystem paths (the log and /status have them).
        assert str(n.storage.path.parent) not in reason
        assert str(n.storage.path.parent) not in error["message"]
        await eventually(lambda: not_ready(client))  # it stays so
        admin: Client = TestClient(TestServer(create_admin_app(n)))
        await admin.start_server()
        try:
            status = await (await admin.get("/status")).json()
        finally:
            await admin.close()
        assert status["ready"] is False
        assert "deleted" in status["reasons"]["storage"]
        assert str(n.storage.path) in status["reasons"]["storage"]  # loopback only
    logged = [r for r in caplog.records if "deleted" in r.getMessage()]
    assert len(logged) == 1


async def test_a_corrupted_database_file_makes_the_node_unready(
    node: tuple[Node, Client], caplog: pytest.LogCaptureFixture
) -> None:
    n, client = node
    with caplog.at_level(logging.ERROR, logger="caxton.storage"):
        await asyncio.to_thread(overwrite_header, n.storage.path)
        error = await eventually(lambda: not_ready(client))
        assert "corrupted" in error["details"]["reasons"]["storage"]
        assert str(n.storage.path.parent) not in str(error)
    assert any("corrupted" in r.getMessage() for r in caplog.records)


async def test_a_full_database_fails_its_writes_with_the_real_error_then_recovers(
    storage: Storage, agent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLITE_FULL (``max_page_count`` stands in for the disk) inside a write: SQLite rolls the
    transaction back, and every write of the batch fails with "disk is full" (it said "no such
    savepoint"); the store reports the problem until a write succeeds again."""
    monkeypatch.setattr(_health, "SETTLE", 0.0)
    pages = await storage.read(lambda c: c.fetch_value("PRAGMA page_count"))
    await storage.write(lambda c: c.fetch_value(f"PRAGMA max_page_count = {pages + 2}"))
    writes = [storage.kv.set_nowait(agent, b"k%d" % i, b"v" * 3000) for i in range(10)]
    for write in writes:
        with pytest.raises(StorageError, match="disk is full"):
            await asyncio.wrap_future(write)
    assert storage.problem is not None
    assert storage.problem.startswith("disk full")
    assert await storage.read(lambda c: c.fetch_value("SELECT COUNT(*) FROM kv")) == 0

    await storage.write(lambda c: c.fetch_value("PRAGMA max_page_count = 1073741823"))
    await asyncio.wrap_future(storage.kv.set_nowait(agent, b"k", b"v" * 3000))
    assert storage.problem is None


async def test_schedule_returns_the_storage_code_while_the_store_cannot_write(
    node: tuple[Node, Client],
) -> None:
    """As `kv_set` does: `schedule` answered 0 although the timer's row could not be written."""
    n, client = node
    await n.agents.deploy(DeployRequest(name="ticker", wasm=wat("timerflood")))
    os.unlink(n.storage.path)
    await eventually(lambda: not_ready(client))
    await n.messaging.submit({"receiver": "ticker", "performative": "inform"}, client="t")

    async def failed() -> str | None:
        return n.runtime.agent_statistics("ticker").last_error

    # timerflood returns the first code `schedule` gives that is not 0.
    assert await eventually(failed) == f"returned_error: caxton_handle returned {abi.ERR_STORAGE}"
    assert n.runtime._timers is not None
    assert len(n.runtime._timers) == 0  # the first one was refused, and the agent stopped


async def test_the_storage_writable_gauge_follows_the_store(node: tuple[Node, Client]) -> None:
    """``caxton_storage_writable``: 1 while the store can write, 0 while /ready says it cannot."""
    n, client = node
    metrics = Metrics.create(CollectorRegistry(), process_metrics=False)
    metrics.register_snapshot_source("storage", n.storage.metric_samples)

    def writable() -> float | None:
        text = render_metrics(metrics.registry)[0].decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "caxton_storage_writable":
                    return float(sample.value)
        return None

    assert writable() == 1
    os.unlink(n.storage.path)
    await eventually(lambda: not_ready(client))
    assert writable() == 0
