"""``max_connections`` idle sockets do not take ``/health`` down (attack 11): on a real node with
``max_connections = 4``, four idle sockets leave ``/health`` answering within a second on the
API port (a probe slot) and on the admin listener, while other routes say 503 on a probe slot."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from caxton.api.listener import PROBE_TIMEOUT
from caxton.server import API_PROBE_SLOTS
from tests.nodeproc import NodeProcess, write_config
from tests.support import wait_until

pytestmark = pytest.mark.slow

MAX_CONNECTIONS = 4


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    config = write_config(tmp_path, networking=f"max_connections = {MAX_CONNECTIONS}\n")
    with NodeProcess(config).start() as running:
        yield running


def _idle_sockets(node: NodeProcess, count: int) -> list[socket.socket]:
    host, port = node.url("api", "").split("//")[1].rsplit(":", 1)
    socks = [socket.create_connection((host, int(port)), timeout=5) for _ in range(count)]

    wait_until(
        lambda: _open(node) >= count, 5, interval=0.02, what=f"the node accepted {count} sockets"
    )
    return socks


def _open(node: NodeProcess) -> float:
    """The node's own count of its open API connections (from its metrics)."""
    _, body = node.get("metrics", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith("caxton_http_connections_active "):
            return float(line.split()[1])
    raise AssertionError("no caxton_http_connections_active in the metrics")


def _timed_get(url: str) -> tuple[int, bytes, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    return status, body, time.monotonic() - started


def test_health_answers_with_max_connections_idle_sockets(node: NodeProcess) -> None:
    socks = _idle_sockets(node, MAX_CONNECTIONS)
    try:
        for listener in ("api", "admin"):
            status, body, seconds = _timed_get(node.url(listener, "/health"))
            assert (status, json.loads(body)) == (200, {"status": "ok"}), listener
            assert seconds < 1.0, (listener, seconds)
        status, body, seconds = _timed_get(node.url("api", "/ready"))
        assert status == 200
        assert seconds < 1.0

        # The other routes are not served on a probe slot: a 503 envelope, at once.
        status, body, seconds = _timed_get(node.url("api", "/api/v1/agents"))
        assert status == 503
        error = json.loads(body)["error"]
        assert error["code"] == "UNAVAILABLE"
        assert error["details"] == {"max_connections": MAX_CONNECTIONS}
        assert seconds < 1.0

        # The idle connections themselves are ordinary ones and still served.
        socks[0].sendall(b"GET /api/v1/agents HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert socks[0].recv(64).startswith(b"HTTP/1.1 200")
    finally:
        for sock in socks:
            sock.close()


def test_idle_sockets_on_the_probe_slots_are_dropped_within_a_second(node: NodeProcess) -> None:
    socks = _idle_sockets(node, MAX_CONNECTIONS + API_PROBE_SLOTS)
    try:
        wait_until(  # the probe-slot squatters are closed within PROBE_TIMEOUT
            lambda: _open(node) <= MAX_CONNECTIONS,
            PROBE_TIMEOUT + 0.3,
            interval=0.02,
            what="the node closed the sockets idle on its probe slots",
        )
        status, _, seconds = _timed_get(node.url("api", "/health"))
        assert status == 200
        assert seconds < 1.0
        status, _, seconds = _timed_get(node.url("admin", "/health"))
        assert status == 200
        assert seconds < 1.0
    finally:
        for sock in socks:
            sock.close()
