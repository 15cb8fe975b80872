"""Hostile senders against a real node process, each for a few seconds.

A self-amplifying agent (``amplify.wat``) and one flooding an unknown name
(``sendflood.wat``) run with the default budgets while the test polls ``/health`` and an
``echo`` agent. The node's memory, its answers, its database and its next start stay bounded.
The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.nodeproc import NodeProcess, write_config
from tests.support import EXAMPLES, wat

pytestmark = pytest.mark.slow

#: Seconds each flood runs.
FLOOD = 4.0
MB = 1024 * 1024


def _db_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in (directory / "data").glob("local.db*"))


def _post(node: NodeProcess, path: str, body: bytes, content_type: str, timeout: float) -> bytes:
    request = urllib.request.Request(
        node.url("api", path), data=body, headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return bytes(resp.read())


def _deploy(node: NodeProcess, name: str, wasm: bytes) -> None:
    _post(node, f"/api/v1/agents?name={name}", wasm, "application/wasm", 10)


def _send(node: NodeProcess, message: dict[str, object], wait: str | None = None) -> bytes:
    path = "/api/v1/messages" + (f"?wait={wait}" if wait else "")
    return _post(node, path, json.dumps(message).encode(), "application/json", 5)


def _kick(node: NodeProcess, name: str) -> None:
    """A message for the flooder; 429 (its mailbox stayed full) is an answer too."""
    try:
        _send(node, {"receiver": name, "sender": "t", "performative": "inform"})
    except urllib.error.HTTPError as exc:
        if exc.code != 429:
            raise


def _restart_seconds(node: NodeProcess) -> float:
    started = time.monotonic()
    node.start(timeout=30)
    return time.monotonic() - started


@pytest.mark.parametrize(
    ("fixture", "name"),
    [
        pytest.param("amplify", "amp", id="self-amplifying"),
        pytest.param("sendflood", "flood", id="unknown-receiver"),
    ],
)
def test_a_send_flood_does_not_take_the_node_down(tmp_path: Path, fixture: str, name: str) -> None:
    config = write_config(tmp_path)
    with NodeProcess(config).start() as node:
        _deploy(node, "echo", (EXAMPLES / "echo.wasm").read_bytes())
        _deploy(node, name, wat(fixture))
        time.sleep(0.3)  # the node settles before its baseline is taken
        rss0, db0 = node.rss(), _db_size(tmp_path)
        peak, worst_health, worst_echo, echoes = rss0, 0.0, 0.0, 0
        started = time.monotonic()
        next_kick = started
        while time.monotonic() - started < FLOOD:
            if time.monotonic() >= next_kick:  # the flooder gets a new message twice a second
                _kick(node, name)
                next_kick += 0.5
            t0 = time.monotonic()
            status, _ = node.get("api", "/health")
            worst_health = max(worst_health, time.monotonic() - t0)
            assert status == 200
            t0 = time.monotonic()
            reply = json.loads(
                _send(
                    node,
                    {"receiver": "echo", "sender": "t", "performative": "request", "content": 1},
                    wait="2s",
                )
            )
            worst_echo = max(worst_echo, time.monotonic() - t0)
            assert reply["sender"] == "echo"
            echoes += 1
            peak = max(peak, node.rss())
            time.sleep(0.1)  # the probes' pace over the flood's real time
        db1 = _db_size(tmp_path)
        code, err = node.stop()
        assert code == 0, err[-2000:]
        with sqlite3.connect(tmp_path / "data" / "local.db") as db:
            (pending,) = db.execute("SELECT COUNT(*) FROM pending_deliveries").fetchone()
            (letters,) = db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()
        ready = _restart_seconds(node)
        status, _ = node.get("api", "/health")
        assert status == 200
        node.stop()
    print(
        f"\n{fixture}: {FLOOD:.0f} s, RSS +{(peak - rss0) / MB:.1f} MB, max /health"
        f" {worst_health * 1000:.0f} ms, {echoes} echoes (max {worst_echo * 1000:.0f} ms),"
        f" db {db0 / MB:.1f} -> {db1 / MB:.1f} MB,"
        f" pending rows at stop {pending}, dead letters {letters}, restart to ready {ready:.2f} s"
    )
    assert peak - rss0 < 150 * MB
    assert worst_health < 1.0
    assert pending <= 1024 + 64  # at most a mailbox (and what was being handled)
    assert letters <= 1000 * (FLOOD + 2)  # max_dead_letters_per_second
    assert db1 - db0 < 200 * MB  # history at the handling rate, pruned to its budget
    assert ready < 10
