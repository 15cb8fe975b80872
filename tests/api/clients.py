"""A node in this process with a test client on its API: what most API tests start from."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from caxton.api.app import create_app
from caxton.config import (
    Config,
    CoordinationConfig,
    NetworkingConfig,
    RuntimeConfig,
    SecurityConfig,
)
from caxton.node import Node

Client = TestClient[Any, Any]


@asynccontextmanager
async def api_client(
    tmp_path: Path,
    *,
    runtime: RuntimeConfig | None = None,
    networking: NetworkingConfig | None = None,
    **security: Any,
) -> AsyncIterator[Client]:
    """A started node on ``tmp_path/local.db`` and a client of its API; ``security`` are
    `SecurityConfig` fields. Both are closed on the way out."""
    config = Config(
        coordination=CoordinationConfig(local_state_path=tmp_path / "local.db"),
        runtime=runtime or RuntimeConfig(),
        networking=networking or NetworkingConfig(),
        security=dataclasses.replace(SecurityConfig(), **security),
    )
    node = Node(config)
    await node.start()
    client: Client = TestClient(TestServer(create_app(node)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        await node.aclose()
