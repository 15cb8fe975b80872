"""The deployment guide's production.toml, and the corrected one we ship as deploy/production.toml,
pointed at a temp dir and loopback ports: each checks and runs."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.nodeproc import NodeProcess, free_port
from tests.support import wait_until
from tests.tls import self_signed

pytestmark = pytest.mark.slow

SEED = Path(__file__).parent.parent / "config" / "fixtures" / "production.toml"
SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "production.toml"
SECRET = "s3cret-jwt-value-for-tests"


def _self_signed(directory: Path) -> None:
    cert, key = self_signed()
    (directory / "server.crt").write_bytes(cert)
    (directory / "ca.crt").write_bytes(cert)
    (directory / "server.key").write_bytes(key)


def _seed_config(tmp_path: Path, source: Path = SEED) -> Path:
    root = tmp_path / "opt" / "caxton"
    (root / "config").mkdir(parents=True)
    _self_signed(root / "config")
    text = source.read_text().replace("/opt/caxton", str(root))
    for public, key in (
        ("0.0.0.0:8080", "api"),
        ("0.0.0.0:9090", "metrics"),
        ("127.0.0.1:8081", "admin"),
        ("0.0.0.0:7946", "gossip"),
    ):
        assert public in text, key
        text = text.replace(public, f"127.0.0.1:{free_port()}")
    sink = free_port()  # nothing listens: exporting spans must not disturb the node
    text, n = re.subn(
        r'^otlp_endpoint = ".*"$', f'otlp_endpoint = "http://127.0.0.1:{sink}"', text, flags=re.M
    )
    assert n == 1
    text = text.replace('drain_delay = "7s"', 'drain_delay = "100ms"')  # a quicker test
    path = root / "config" / "production.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("source", [SEED, SHIPPED], ids=["seed", "deploy"])
def test_seed_production_toml_checks_and_runs(tmp_path: Path, source: Path) -> None:
    cfg = _seed_config(tmp_path, source)
    env = {"JWT_SECRET": SECRET}
    check = subprocess.run(
        [sys.executable, "-m", "caxton", "config", "check", str(cfg)],
        capture_output=True,
        env={**os.environ, **env},
        timeout=30,
    )
    assert check.returncode == 0, check.stderr.decode()
    assert b"OK" in check.stdout

    missing = subprocess.run(
        [sys.executable, "-m", "caxton", "config", "check", str(cfg)],
        capture_output=True,
        timeout=30,
    )
    assert missing.returncode == 2
    assert b"JWT_SECRET" in missing.stderr

    node = NodeProcess(cfg, env=env)
    node.start(wait=False)
    with node:
        context = ssl.create_default_context(cafile=str(cfg.parent / "ca.crt"))
        api = node.url("api", "")
        assert api.startswith("https://")

        def ready() -> bool:
            with urllib.request.urlopen(api + "/ready", context=context, timeout=2) as r:
                status: int = r.status
                return status == 200

        wait_until(ready, 20, retry_on=(OSError,), what="the TLS API became ready")
        with urllib.request.urlopen(api + "/health", context=context, timeout=2) as r:
            assert json.loads(r.read()) == {"status": "ok"}

        status, body = node.get("metrics", "/metrics")
        assert status == 200
        assert b"caxton_http_requests_total" in body

        status, body = node.get("admin", "/config")
        assert status == 200
        assert SECRET.encode() not in body
        assert json.loads(body)["security"]["jwt_secret"] == "********"

        code, stderr = node.stop(signal.SIGTERM)
        assert code == 0, stderr

    log = (tmp_path / "opt" / "caxton" / "logs" / "caxton.log").read_text()
    assert SECRET not in log
    first = json.loads(log.splitlines()[0])
    assert {"time", "level", "logger", "message"} <= set(first)
    db = tmp_path / "opt" / "caxton" / "data" / "local.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_shipped_file_has_the_corrections_the_docs_list(tmp_path: Path) -> None:
    from caxton.config import load_config

    cfg = load_config(_seed_config(tmp_path, SHIPPED), environ={"JWT_SECRET": SECRET})
    assert cfg.runtime.agent_shutdown_timeout == 5.0  # the guide's second [runtime], merged
    assert cfg.runtime.memory_pressure_threshold == 0.8
    assert cfg.coordination.cluster_enabled is False  # not available: it would only warn
    assert cfg.networking.drain_delay > 0  # behind the guide's load balancers
    raw = SHIPPED.read_text()
    assert 'otlp_endpoint = "http://jaeger-collector:4318/v1/traces"' in raw
    assert 'jwt_secret = "${JWT_SECRET}"' in raw
    readme = (SHIPPED.parents[1] / "README.md").read_text()
    assert "caxton config check deploy/production.toml" in readme
    assert "caxton config check /opt/caxton/config/production.toml" not in readme
