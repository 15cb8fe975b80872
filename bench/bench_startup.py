"""Startup to `/health` 200 and idle RSS of a node on the embedded default.

Runs `caxton serve` N times in a fresh temporary directory (so the state file is created each
time, the embedded default's layout), on free loopback ports, and prints JSON:

    python bench/bench_startup.py [--runs 5] [--cluster]

``--cluster`` turns ``cluster_enabled`` on (a one-node cluster: the node also starts its
nats-server child and connects to it before it is ready).

Targets: startup to /health 200 under 1 s; idle RSS under 80 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def one_run(*, cluster: bool = False) -> tuple[float, float, int]:
    """(seconds to /health 200, seconds to /ready 200, idle RSS bytes) of one fresh node."""
    with tempfile.TemporaryDirectory() as tmp:
        api, metrics, admin = _free_port(), _free_port(), _free_port()
        cfg = Path(tmp) / "caxton.toml"
        cluster_keys = (
            f'cluster_enabled = true\nbind_addr = "127.0.0.1:{_free_port()}"\n' if cluster else ""
        )
        cfg.write_text(
            f'[networking]\nbind_address = "127.0.0.1:{api}"\n'
            f'metrics_address = "127.0.0.1:{metrics}"\nadmin_address = "127.0.0.1:{admin}"\n'
            f'[coordination]\nlocal_state_path = "{tmp}/caxton-data/local.db"\n{cluster_keys}'
        )
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "caxton", "serve", "--config", str(cfg)],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        health = ready = None
        try:
            while ready is None:
                if proc.poll() is not None:
                    raise SystemExit(f"node exited with {proc.returncode}")
                for path in ("/health", "/ready"):
                    try:
                        url = f"http://127.0.0.1:{api}{path}"
                        with urllib.request.urlopen(url, timeout=1) as resp:
                            if resp.status == 200:
                                now = time.perf_counter() - started
                                if path == "/health" and health is None:
                                    health = now
                                if path == "/ready":
                                    ready = now
                    except OSError:
                        pass
                time.sleep(0.002)
            time.sleep(1.0)  # let it settle: this is the *idle* RSS
            rss = _rss_bytes(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
        assert health is not None
        return health, ready, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cluster", action="store_true", help="with cluster_enabled = true")
    args = parser.parse_args()
    results = [one_run(cluster=args.cluster) for _ in range(args.runs)]
    health = [r[0] for r in results]
    ready = [r[1] for r in results]
    rss = [r[2] for r in results]
    print(
        json.dumps(
            {
                "benchmark": "startup",
                "runs": args.runs,
                "cluster_enabled": args.cluster,
                "startup_to_health_s": {"median": statistics.median(health), "max": max(health)},
                "startup_to_ready_s": {"median": statistics.median(ready), "max": max(ready)},
                "idle_rss_mb": {"median": statistics.median(rss) / 2**20, "max": max(rss) / 2**20},
                "targets": {"startup_to_health_s": 1.0, "idle_rss_mb": 80},
                "machine": {
                    "python": platform.python_version(),
                    "cpu_count": os.cpu_count(),
                    "platform": platform.platform(),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
