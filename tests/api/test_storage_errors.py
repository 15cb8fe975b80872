"""A failing state store is a 503 that names no SQL.

The database is corrupted under the running node (the WAL overwritten with noise, as a bad
disk or a stray process would): the API answers ``503 UNAVAILABLE`` with a generic message and
the statement and SQLite's words go to the server log only.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from caxton.api.app import create_app
from caxton.config import Config, CoordinationConfig, NetworkingConfig
from caxton.node import Node
from tests.support import fast_runtime


def corrupt(path: Path, keep: int) -> None:
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.seek(keep)
        file.write(os.urandom(max(size - keep, 0)))


async def test_sqlite_errors_reach_the_client_without_sql(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "local.db"
    config = Config(
        coordination=CoordinationConfig(local_state_path=db),
        runtime=fast_runtime(),
        networking=dataclasses.replace(NetworkingConfig(), request_timeout=10.0),
    )
    node = Node(config)
    await node.start()
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(node)))
    await client.start_server()
    try:
        message = {"performative": "inform", "receiver": "nobody"}
        resp = await client.post("/api/v1/messages", json=message)
        assert resp.status == 202, await resp.text()
        conversation = (await resp.json())["conversation_id"]
        corrupt(Path(f"{db}-wal"), 32)
        corrupt(db, 100)
        caplog.set_level(logging.ERROR, logger="caxton.http")
        for path in ("/api/v1/dead-letters", f"/api/v1/conversations/{conversation}"):
            resp = await client.get(path)
            text = await resp.text()
            assert resp.status == 503, text
            error = (await resp.json())["error"]
            assert error == {
                "code": "UNAVAILABLE",
                "message": "the state store failed; see the server log",
                "details": {},
            }
            for word in ("SQL", "SELECT", "sqlite", "database", "FROM"):
                assert word not in text
        logged = "\n".join(r.getMessage() for r in caplog.records)
        # The operator still gets SQLite's words (and the statement, when one failed).
        assert logged.count("storage failed in GET /api/v1/") == 2
        assert "database" in logged
    finally:
        await client.close()
        await node.aclose()
