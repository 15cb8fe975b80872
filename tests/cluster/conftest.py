"""Helpers for the tests that run real nats-server children on 127.0.0.1."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from caxton.config.schema import Address, CoordinationConfig
from tests.nodeproc import free_port


def coordination(
    port: int | None = None, seeds: tuple[int, ...] = (), **keys: object
) -> CoordinationConfig:
    """A cluster config on loopback: route listener on `port`, seeds on the `seeds` ports."""
    return CoordinationConfig(
        cluster_enabled=True,
        bind_addr=Address("127.0.0.1", port or free_port()),
        seeds=tuple(f"127.0.0.1:{seed}" for seed in seeds),
        **keys,  # type: ignore[arg-type]
    )


def alive(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (a zombie counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.fixture
def leftover_pids() -> Iterator[list[int]]:
    """Process ids a test started indirectly; any still running at the end are killed."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
