"""Fixtures for the storage tests: a state path in a temporary directory and an open store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from caxton.storage import AgentRecord, Storage


@pytest.fixture
def state_path(data_dir: Path) -> Path:
    """Where the node's state database lives (not created yet)."""
    return data_dir / "local.db"


@pytest.fixture
async def storage(state_path: Path) -> AsyncIterator[Storage]:
    """An open store on a fresh database, closed after the test."""
    async with await Storage.open(state_path) as store:
        yield store


@pytest.fixture
async def agent(storage: Storage) -> str:
    """The name of an agent that exists in ``storage``."""
    await storage.agents.create(AgentRecord(name="echo"), b"\0asm\x01\0\0\0")
    return "echo"
