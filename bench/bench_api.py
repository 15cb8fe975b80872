"""HTTP API benchmark: ``POST /api/v1/messages`` against a real node process on loopback.

1. **latency**: sequential ``POST /api/v1/messages?wait=5s`` to the ``echo`` example agent
   (the answer carries echo's reply): p50/p95/p99 in milliseconds, beside ``GET /health`` (the
   HTTP floor of this machine) measured the same way.
2. **throughput**: accepted durable messages per second (``202``, committed to SQLite before
   the answer) to the ``pong`` example (an ``inform`` it handles without answering) from many
   concurrent connections without ``?wait``, with ``wrk`` and a small
   Lua script when ``wrk`` is installed, else with aiohttp clients in ``--clients`` processes;
   and the same with bulk requests (a JSON array of ``--bulk`` messages per POST).

    python bench/bench_api.py [--requests 2000] [--seconds 10] [--connections 64]
                              [--clients 2] [--no-wrk] [--bulk 100] [--bulk-only]

``--bulk-only`` measures only the bulk figure (wrk; no latency or single-message run), for
quick interleaved before/after comparisons.

Prints one JSON document. Targets: p50 < 2 ms, >= 10,000 accepted msgs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
ECHO = ROOT / "examples" / "agents" / "echo.wasm"
MESSAGE = {"receiver": "echo", "performative": "request", "content": {"n": 1, "text": "hi"}}
#: For the throughput figures: `pong` handles an `inform` without answering, so the node's
#: work per message is acceptance (validation, SQLite commit, routing) plus one handling.
SINK = ROOT / "examples" / "agents" / "pong.wasm"
SINK_MESSAGE = {"receiver": "pong", "performative": "inform", "content": {"n": 1, "text": "hi"}}
_LUA = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
"""


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_node(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A `caxton serve` process on loopback; returns it and the API's base URL."""
    api, metrics, admin = _port(), _port(), _port()
    config = directory / "caxton.toml"
    config.write_text(
        f"""
[networking]
bind_address = "127.0.0.1:{api}"
metrics_address = "127.0.0.1:{metrics}"
admin_address = "127.0.0.1:{admin}"

[coordination]
local_state_path = "{directory / "data" / "local.db"}"

[observability]
log_level = "warn"
log_file = "{directory / "caxton.log"}"
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "caxton", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{api}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/ready", timeout=1) as resp:
                if resp.status == 200:
                    return proc, base
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the node did not become ready")


def deploy_echo(base: str) -> None:
    """Deploy the echo agent (latency) and the pong agent (the throughput sink)."""
    for name, module in (("echo", ECHO), ("pong", SINK)):
        req = urllib.request.Request(
            base + f"/api/v1/agents?name={name}",
            data=module.read_bytes(),
            method="POST",
            headers={"Content-Type": "application/wasm"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 201


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50_ms": round(q[49] * 1000, 3),
        "p95_ms": round(q[94] * 1000, 3),
        "p99_ms": round(q[98] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


async def latency(base: str, requests: int) -> dict[str, Any]:
    """Sequential ?wait= round trips to echo, and /health for the floor."""
    body = json.dumps(MESSAGE).encode()
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one_post() -> float:
            started = time.perf_counter()
            async with session.post(
                base + "/api/v1/messages?wait=5s", data=body, headers=headers
            ) as resp:
                answer = await resp.json()
            elapsed = time.perf_counter() - started
            assert resp.status == 200, answer
            assert answer["content"] == MESSAGE["content"]
            return elapsed

        async def one_health() -> float:
            started = time.perf_counter()
            async with session.get(base + "/health") as resp:
                await resp.read()
            return time.perf_counter() - started

        for _ in range(min(200, requests)):  # warm up: connection, caches, JIT-less paths
            await one_post()
            await one_health()
        posts = [await one_post() for _ in range(requests)]
        health = [await one_health() for _ in range(requests)]
    return {
        "requests": requests,
        "post_wait": _percentiles(posts),
        "health_floor": _percentiles(health),
    }


def _wrk(url: str, seconds: int, connections: int, script: str = "") -> tuple[int, str]:
    """The requests wrk made, and its report (one thread: the node gets the other cores).

    ``script`` is wrk's Lua script (empty: plain GETs).
    """
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script)
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", lua.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(lua.name)
    found = re.search(r"(\d+) requests in", out)
    assert found is not None, out
    total = int(found.group(1))
    return total, out


def wrk_health(base: str, seconds: int, connections: int) -> dict[str, Any]:
    """``GET /health`` per second with wrk: this machine's HTTP ceiling for one request."""
    total, _ = _wrk(base + "/health", seconds, connections)
    return {"tool": "wrk", "connections": connections, "requests_per_second": total // seconds}


def wrk_throughput(base: str, seconds: int, connections: int, bulk: int = 1) -> dict[str, Any]:
    """Accepted messages/s with wrk.

    ``bulk`` > 1 posts JSON arrays of that many messages (the API's bulk send).
    """
    body = json.dumps(SINK_MESSAGE) if bulk == 1 else json.dumps([SINK_MESSAGE] * bulk)
    total, out = _wrk(base + "/api/v1/messages", seconds, connections, _LUA % body)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failed = int(non2xx.group(1)) if non2xx else 0
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
    return {
        "tool": "wrk",
        "connections": connections,
        "seconds": seconds,
        "messages_per_request": bulk,
        "requests": total,
        "not_accepted": failed,
        "accepted_per_second": round((total - failed) * bulk / seconds),
        "p50_under_load": p50.group(1) if p50 else None,
    }


def _client_process(base: str, seconds: float, connections: int, out: Any) -> None:
    async def run() -> tuple[int, int]:
        body = json.dumps(SINK_MESSAGE).encode()
        headers = {"Content-Type": "application/json"}
        ok = bad = 0
        deadline = time.monotonic() + seconds
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                nonlocal ok, bad
                while time.monotonic() < deadline:
                    async with session.post(
                        base + "/api/v1/messages", data=body, headers=headers
                    ) as resp:
                        await resp.read()
                        if resp.status == 202:
                            ok += 1
                        else:
                            bad += 1

            await asyncio.gather(*(worker() for _ in range(connections)))
        return ok, bad

    out.put(asyncio.run(run()))


def aiohttp_throughput(base: str, seconds: int, connections: int, clients: int) -> dict[str, Any]:
    """Accepted messages/s from ``clients`` processes of aiohttp clients."""
    queue: Any = multiprocessing.Queue()
    per = max(1, connections // clients)
    procs = [
        multiprocessing.Process(target=_client_process, args=(base, seconds, per, queue))
        for _ in range(clients)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    ok = sum(r[0] for r in results)
    return {
        "tool": f"aiohttp x{clients} processes",
        "connections": per * clients,
        "seconds": seconds,
        "requests": ok + sum(r[1] for r in results),
        "not_accepted": sum(r[1] for r in results),
        "accepted_per_second": round(ok / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--no-wrk", action="store_true", help="use aiohttp clients")
    parser.add_argument(
        "--bulk", type=int, default=100, help="messages per request for the bulk figure (wrk)"
    )
    parser.add_argument(
        "--bulk-only", action="store_true", help="only the bulk throughput figure (needs wrk)"
    )
    args = parser.parse_args()
    if args.bulk_only and not shutil.which("wrk"):
        raise SystemExit("--bulk-only needs wrk")
    with tempfile.TemporaryDirectory(prefix="caxton-bench-api-") as tmp:
        proc, base = start_node(Path(tmp))
        try:
            deploy_echo(base)
            if args.bulk_only:
                bulk_only = wrk_throughput(base, args.seconds, 8, args.bulk)
                print(json.dumps({"benchmark": "api", "bulk_throughput": bulk_only}, indent=2))
                return
            lat = asyncio.run(latency(base, args.requests))
            bulk: dict[str, Any] | None = None
            health: dict[str, Any] | None = None
            if shutil.which("wrk") and not args.no_wrk:
                thr = wrk_throughput(base, args.seconds, args.connections)
                bulk = wrk_throughput(base, args.seconds, 8, args.bulk)
                health = wrk_health(base, max(1, args.seconds // 2), args.connections)
            else:
                thr = aiohttp_throughput(base, args.seconds, args.connections, args.clients)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    p50 = lat["post_wait"]["p50_ms"]
    print(
        json.dumps(
            {
                "benchmark": "api",
                "machine": {
                    "cpus": os.cpu_count(),
                    "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(),
                },
                "latency": lat,
                "throughput": thr,
                "bulk_throughput": bulk,
                # One request per message is bound by the HTTP stack, not by acceptance: this
                # is the same server answering GET /health as fast as it can.
                "health_throughput": health,
                "targets": {
                    "p50_under_2ms": p50 < 2.0,
                    "accepted_at_least_10000_per_s": thr["accepted_per_second"] >= 10_000,
                    "bulk_accepted_at_least_10000_per_s": (
                        bulk is not None and bulk["accepted_per_second"] >= 10_000
                    ),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
