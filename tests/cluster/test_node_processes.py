"""Real `caxton serve` processes with ``cluster_enabled``: each runs its own nats-server child."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from caxton.cluster import _monitor
from tests.nodeproc import NodeProcess, free_port, write_config
from tests.support import wait_until

from .conftest import alive


def cluster_node(directory: Path, port: int, seeds: tuple[int, ...] = (), extra: str = "") -> Path:
    """A node config with the cluster on: route listener on `port`, the `seeds` ports as seeds."""
    listed = ", ".join(f'"127.0.0.1:{seed}"' for seed in seeds)
    directory.mkdir(parents=True, exist_ok=True)
    return write_config(
        directory,
        coordination=f'cluster_enabled = true\nbind_addr = "127.0.0.1:{port}"\n'
        f'seeds = [{listed}]\nprobe_interval = "1s"\n{extra}',
        log_level="info",
    )


def cluster_status(node: NodeProcess) -> dict[str, Any]:
    status, body = node.get("admin", "/status")
    assert status == 200, body
    cluster: dict[str, Any] = json.loads(body)["cluster"]
    return cluster


def routez_peers(monitor_port: int) -> set[str]:
    """The names of the servers the child at `monitor_port` has routes to (its own /routez)."""
    import asyncio

    routez = asyncio.run(_monitor.get_json(monitor_port, "/routez"))
    return {route["remote_name"] for route in routez["routes"]}


def child_pid(node: NodeProcess) -> int:
    pid = cluster_status(node)["nats_server_pid"]
    assert isinstance(pid, int)
    return pid


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0)], ids=["in-order", "reverse-order"])
def test_three_nodes_from_one_seed_list_become_ready_and_mesh(
    tmp_path: Path, order: tuple[int, int, int], leftover_pids: list[int]
) -> None:
    ports = tuple(free_port() for _ in range(3))
    nodes = [
        NodeProcess(cluster_node(tmp_path / f"node{index}", port, seeds=ports))
        for index, port in enumerate(ports)
    ]
    try:
        for index in order:  # each is ready on its own, before its seeds are up
            nodes[index].start(timeout=30)
            leftover_pids.append(child_pid(nodes[index]))
        statuses = [cluster_status(node) for node in nodes]
        names = {status["node_name"] for status in statuses}
        assert len(names) == 3
        for node, status in zip(nodes, statuses, strict=True):
            assert status["joined"] is True
            assert status["connected"] is True
            others = names - {status["node_name"]}

            def meshed(port: int = status["monitor_port"], others: set[str] = others) -> bool:
                return routez_peers(port) == others

            wait_until(meshed, 10, retry_on=(OSError,), what="a full mesh")

            def shown(node: NodeProcess = node, others: set[str] = others) -> bool:
                current = cluster_status(node)
                return set(current["peers"]) == others and current["routes"] >= 2

            wait_until(shown, 10, what="/status shows the routes")
        for node in nodes:
            code, body = node.get("api", "/ready")
            assert code == 200
            assert json.loads(body)["checks"]["cluster"] is True
    finally:
        for node in nodes:
            node.__exit__()


def test_kill_9_of_the_node_takes_its_nats_server_down(
    tmp_path: Path, leftover_pids: list[int]
) -> None:
    with NodeProcess(cluster_node(tmp_path, free_port())) as node:
        node.start(timeout=30)
        pid = child_pid(node)
        leftover_pids.append(pid)
        assert alive(pid)
        assert node.proc is not None
        node.proc.kill()
        node.proc.wait(timeout=10)
        wait_until(lambda: not alive(pid), 5, what="the nats-server child died with the node")


def test_sigterm_drains_exits_0_and_stops_the_child(
    tmp_path: Path, leftover_pids: list[int]
) -> None:
    config = cluster_node(tmp_path, free_port())
    config.write_text(config.read_text() + '\n[runtime]\nagent_shutdown_timeout = "3s"\n')
    with NodeProcess(config) as node:
        node.start(timeout=30)
        pid = child_pid(node)
        leftover_pids.append(pid)
        started = time.monotonic()
        code, stderr = node.stop(signal.SIGTERM, timeout=10)
        took = time.monotonic() - started
    assert code == 0, stderr
    assert took < 3.0
    assert not alive(pid)
    log = (tmp_path / "logs" / "caxton.log").read_text()
    records = [json.loads(line) for line in log.splitlines()]
    messages = [(r["logger"], r["message"]) for r in records]
    # The child's own lines reach the node's log; the client closed before the child stopped.
    assert ("caxton.cluster.nats", "Server Exiting..") in messages
    assert ("caxton.cluster", "cluster: connected to NATS") in messages
    assert not any("disconnected" in message for _, message in messages)
    assert messages.index(("caxton.node", "node stopped")) > messages.index(
        ("caxton.cluster.nats", "Server Exiting..")
    )


def test_a_taken_bind_addr_exits_3_naming_the_key(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with NodeProcess(cluster_node(tmp_path, port)) as node:
            node.start(wait=False)
            assert node.proc is not None
            _, err = node.proc.communicate(timeout=30)
    assert node.proc.returncode == 3, err
    message = err.decode()
    assert f"coordination.bind_addr 127.0.0.1:{port} is in use" in message
    assert "the cluster could not start" in message


def test_a_nats_server_that_will_not_start_exits_6(tmp_path: Path) -> None:
    fake = tmp_path / "fake-nats-server"
    fake.write_text("#!/bin/sh\necho 'I am not nats-server' >&2\nexit 3\n", encoding="utf-8")
    fake.chmod(0o755)
    config = cluster_node(tmp_path, free_port(), extra=f'nats_server = "{fake}"\n')
    with NodeProcess(config) as node:
        node.start(wait=False)
        assert node.proc is not None
        _, err = node.proc.communicate(timeout=30)
    assert node.proc.returncode == 6, err
    assert "I am not nats-server" in err.decode()


def test_ready_is_503_with_a_reason_while_the_child_is_down(
    tmp_path: Path, leftover_pids: list[int]
) -> None:
    with NodeProcess(cluster_node(tmp_path, free_port())) as node:
        node.start(timeout=30)
        first = child_pid(node)
        os.kill(first, signal.SIGKILL)
        seen: list[dict[str, Any]] = []

        def not_ready() -> bool:
            status, body = node.get("api", "/ready")
            if status == 503:
                seen.append(json.loads(body)["error"])
            return bool(seen)

        wait_until(not_ready, 5, interval=0.005, what="/ready 503 while nats-server is down")
        error = seen[0]
        assert error["details"]["checks"]["cluster"] is False
        assert "not joined" in error["details"]["reasons"]["cluster"]
        assert "cluster: not joined" in error["message"]
        node.wait_ready(10)  # restarted by its supervisor, the client reconnected
        leftover_pids.append(child_pid(node))
        assert child_pid(node) != first


def test_an_unreachable_nats_url_exits_6_naming_the_key(tmp_path: Path) -> None:
    nobody = free_port()
    config = write_config(
        tmp_path,
        coordination=f'cluster_enabled = true\nnats_url = "nats://127.0.0.1:{nobody}"\n',
        log_level="info",
    )
    started = time.monotonic()
    with NodeProcess(config) as node:
        node.start(wait=False)
        assert node.proc is not None
        _, err = node.proc.communicate(timeout=30)
    assert node.proc.returncode == 6, err
    assert time.monotonic() - started < 15  # bounded, though the client reconnects forever later
    message = err.decode()
    assert f"cannot connect to NATS at nats://127.0.0.1:{nobody}" in message
    assert "[coordination] nats_url" in message
    assert not (tmp_path / "data" / "nats").exists()  # no child of its own
