"""Helpers for the tests that run real nats-server children on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from caxton.config import Config
from caxton.config.schema import Address, CoordinationConfig, NetworkingConfig, Secret
from caxton.node import Node
from tests.nodeproc import free_port
from tests.support import eventually, fast_runtime


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


def node_config(tmp_path: Path, name: str, port: int) -> Config:
    """A clustered `Node`'s config: node ``a`` listens on ``port``, the others seed it; state
    under ``tmp_path/name``, fast runtime, probe 0.2 s."""
    keys = coordination(
        port if name == "a" else None,
        (port,),
        node_name=name,
        local_state_path=tmp_path / name / "local.db",
        probe_interval=0.2,
    )
    return Config(coordination=keys, runtime=fast_runtime())


@pytest.fixture
async def node_pair(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    """Started nodes ``a`` and ``b`` of one cluster, once ``a`` sees ``b`` alive."""
    port = free_port()
    made = [Node(node_config(tmp_path, name, port)) for name in ("a", "b")]
    try:
        for node in made:
            await node.start()

        async def b_alive() -> bool:
            assert made[0].cluster is not None
            peer = made[0].cluster.membership.get("b")
            return peer is not None and peer.state == "alive"

        await eventually(b_alive, 10, what="a sees b alive")
        yield made[0], made[1]
    finally:
        for node in reversed(made):
            await node.aclose()


def server_config(
    tmp_path: Path, name: str, port: int, seeds: tuple[int, ...], secret: str | None = None
) -> Config:
    """A whole clustered node's config for an in-process `Server`: its listeners on free ports,
    its state under ``tmp_path/name``, fast runtime, probe 0.2 s and gossip 0.1 s; with
    ``secret``, a ``cluster_secret``."""
    return Config(
        networking=dataclasses.replace(
            NetworkingConfig(),
            bind_address=Address("127.0.0.1", free_port()),
            metrics_address=Address("127.0.0.1", free_port()),
            admin_address=Address("127.0.0.1", free_port()),
        ),
        runtime=fast_runtime(),
        coordination=coordination(
            port,
            seeds,
            node_name=name,
            local_state_path=tmp_path / name / "local.db",
            probe_interval=0.2,
            gossip_interval=0.1,
            cluster_secret=None if secret is None else Secret(secret),
        ),
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
