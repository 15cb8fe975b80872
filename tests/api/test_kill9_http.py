"""kill -9 under HTTP load: no message the API acknowledged is lost.

A real node process with a ``recorder`` agent (it stores each handled message's id in its kv)
takes bulk sends (arrays of 100 messages) from four client threads; mid-load the node gets
SIGKILL. Every message id a 2xx answer carried was committed before the answer: after a restart
each one is handled (it was, or it is redelivered from its pending row). Prints the figures
(``pytest -s``).
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import threading
import time
import tomllib
from pathlib import Path

import pytest

from tests.messaging.conftest import build_c
from tests.nodeproc import NodeProcess, write_config
from tests.support import ROOT

pytestmark = pytest.mark.slow

CLIENTS = 4
BULK = 100  # messages per request
LOAD = 2.0  # seconds of load before the kill


def _port(node: NodeProcess) -> int:
    return int(node.url("api", "").rsplit(":", 1)[1])


def _load(
    port: int, client: int, acked: list[str], refused: list[int], stop: threading.Event
) -> None:
    """Post bulk sends until the node is gone; the ids of every 2xx answer go to ``acked``."""
    batch = 0
    while not stop.is_set():
        body = [
            {"receiver": "recorder", "performative": "inform", "content": [client, batch, i]}
            for i in range(BULK)
        ]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request(
                "POST", "/api/v1/messages", json.dumps(body), {"Content-Type": "application/json"}
            )
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            return  # killed: what was not answered was not acknowledged
        finally:
            conn.close()
        if 200 <= resp.status < 300:
            for entry in json.loads(data)["accepted"]:
                if "message_id" in entry:
                    acked.append(entry["message_id"])
                else:
                    refused.append(entry["index"])  # a dead letter (mailbox full): not accepted
        batch += 1


def _handled(db: Path) -> set[str]:
    with sqlite3.connect(db, timeout=5) as conn:
        rows = conn.execute("SELECT key FROM kv WHERE name = 'recorder'").fetchall()
    return {bytes(key).decode() for (key,) in rows}


def test_kill_9_under_http_load_loses_no_acknowledged_message(tmp_path: Path) -> None:
    wasm = build_c(ROOT / "tests" / "messaging" / "agents" / "recorder.c")
    # recorder keeps a key per message: room for every message of the run (10,000 by default).
    config = write_config(tmp_path, "\n[runtime]\nagent_kv_max_keys = 1000000\n")
    config.write_text(config.read_text().replace('log_level = "debug"', 'log_level = "info"'))
    db = Path(tomllib.loads(config.read_text())["coordination"]["local_state_path"])
    acked: list[str] = []
    refused: list[int] = []
    with NodeProcess(config).start() as node:
        conn = http.client.HTTPConnection("127.0.0.1", _port(node), timeout=10)
        conn.request(
            "POST", "/api/v1/agents?name=recorder", wasm, {"Content-Type": "application/wasm"}
        )
        assert conn.getresponse().status == 201
        conn.close()
        stop = threading.Event()
        clients = [
            threading.Thread(target=_load, args=(_port(node), i, acked, refused, stop))
            for i in range(CLIENTS)
        ]
        for thread in clients:
            thread.start()
        time.sleep(LOAD)  # the load runs for a while before the kill
        assert node.proc is not None
        node.proc.kill()  # SIGKILL, mid-load
        node.proc.wait()
        killed_at = len(acked)
        stop.set()
        for thread in clients:
            thread.join(10)
    assert killed_at > 1000, "the load did not get going"
    handled_at_kill = len(_handled(db) & set(acked))

    restarted = NodeProcess(config)
    t0 = time.monotonic()
    with restarted.start(timeout=30):
        ready = time.monotonic() - t0
        deadline = time.monotonic() + 20
        missing = set(acked) - _handled(db)
        while missing and time.monotonic() < deadline:
            time.sleep(0.2)
            missing -= _handled(db)
        code, err = restarted.stop()
        assert code == 0, err[-2000:]
    print(
        f"\nkill -9 under HTTP load: {len(acked)} acknowledged ({len(refused)} refused as "
        f"mailbox full), {handled_at_kill} handled before the kill, "
        f"{len(acked) - handled_at_kill} after the restart (ready in {ready:.2f} s), "
        f"{len(missing)} lost"
    )
    assert missing == set()
