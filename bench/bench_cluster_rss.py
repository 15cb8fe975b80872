"""Node RSS with N agents (default 10,000) in a cluster of real `caxton serve` processes.

Starts ``--nodes`` (3) node processes on loopback from one seed list (each with its own
nats-server child), deploys ``--agents`` copies of the smallest module
(``tests/fixtures/wat/nop.wat``, one 64 KiB page) through the HTTP API, spread evenly over the
nodes (each node hosts the agents deployed through it; ``--concurrency`` requests at a time per
node: the API has no bulk deploy, and a deploy of bytes already compiled takes the module from
the node's cache; ``runtime.max_agents`` is raised to N), waits until every node lists all of
them, then reads each node's RSS and its nats-server child's. Prints JSON:

    python bench/bench_cluster_rss.py [--agents 10000] [--nodes 3] [--concurrency 8]
                                      [--module examples/agents/echo.wasm]

(``--module``: deploy that module instead of nop.)

Bounded: ``--timeout`` seconds (default 600) for the whole run; it stops the processes it
started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import wasmtime
from _ports import free_port  # bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
NOP = bytes(wasmtime.wat2wasm((ROOT / "tests" / "fixtures" / "wat" / "nop.wat").read_text()))


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Proc:
    """One `caxton serve` process with its API and admin addresses."""

    def __init__(self, directory: Path, route: int, seeds: list[int], max_agents: int) -> None:
        directory.mkdir(parents=True)
        self.api = f"127.0.0.1:{free_port()}"
        self.admin = f"127.0.0.1:{free_port()}"
        listed = ", ".join(f'"127.0.0.1:{seed}"' for seed in seeds)
        self.config = directory / "caxton.toml"
        self.config.write_text(
            f"""
[networking]
bind_address = "{self.api}"
metrics_address = "127.0.0.1:{free_port()}"
admin_address = "{self.admin}"

[coordination]
local_state_path = "{directory / "local.db"}"
cluster_enabled = true
bind_addr = "127.0.0.1:{route}"
seeds = [{listed}]
probe_interval = "1s"

[runtime]
max_agents = {max_agents}

[observability]
log_level = "warn"
log_file = "{directory / "caxton.log"}"
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "caxton", "serve", "--config", str(self.config)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _until(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.1)


async def _ready(http: aiohttp.ClientSession, node: Proc) -> bool:
    try:
        async with http.get(f"http://{node.api}/ready") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def _listed(http: aiohttp.ClientSession, node: Proc) -> int:
    async with http.get(f"http://{node.api}/api/v1/agents?limit=1") as response:
        return int((await response.json())["total"])


async def _deploy(
    http: aiohttp.ClientSession, node: Proc, names: list[str], lanes: int, module: bytes
) -> None:
    queue = list(reversed(names))

    async def lane() -> None:
        while queue:
            name = queue.pop()
            url = f"http://{node.api}/api/v1/agents?name={name}"
            headers = {"Content-Type": "application/wasm"}
            async with http.post(url, data=module, headers=headers) as response:
                if response.status != 201:
                    raise RuntimeError(f"deploy {name}: {response.status} {await response.text()}")

    await asyncio.gather(*(lane() for _ in range(lanes)))


async def run(agents: int, count: int, lanes: int, module: bytes) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="caxton-bench-rss-") as tmp:
        routes = [free_port() for _ in range(count)]
        nodes = [Proc(Path(tmp) / f"node{i}", routes[i], routes, agents) for i in range(count)]
        timeout = aiohttp.ClientTimeout(total=120)
        try:
            for node in nodes:
                node.start()
            async with aiohttp.ClientSession(timeout=timeout) as http:
                for node in nodes:
                    await _until(lambda n=node: _ready(http, n), 60, "a node became ready")
                before = {node.api: rss(_pid(node)) for node in nodes}
                names = [f"a-{i:05}" for i in range(agents)]
                began = time.monotonic()
                await asyncio.gather(
                    *(
                        _deploy(http, node, names[i::count], lanes, module)
                        for i, node in enumerate(nodes)
                    )
                )
                deployed = time.monotonic() - began

                async def everywhere() -> bool:
                    return all([await _listed(http, node) == agents for node in nodes])

                await _until(everywhere, 60, "every node lists every agent")
                converged = time.monotonic() - began
                await asyncio.sleep(2)  # let maintenance and the allocator settle
                per_node = []
                for node in nodes:
                    async with http.get(f"http://{node.admin}/status") as response:
                        nats_pid = (await response.json())["cluster"]["nats_server_pid"]
                    per_node.append(
                        {
                            "agents_hosted": len(names[nodes.index(node) :: count]),
                            "rss_before_mb": round(before[node.api] / 2**20, 1),
                            "rss_mb": round(rss(_pid(node)) / 2**20, 1),
                            "nats_server_rss_mb": round(rss(int(nats_pid)) / 2**20, 1),
                        }
                    )
        finally:
            for node in nodes:
                node.stop()
    return {
        "agents": agents,
        "nodes": count,
        "module_bytes": len(module),
        "deploy_seconds": round(deployed, 2),
        "deploys_per_second": round(agents / deployed, 1),
        "every_node_lists_all_seconds": round(converged, 2),
        "per_node": per_node,
    }


def _pid(node: Proc) -> int:
    assert node.proc is not None
    return node.proc.pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--module", type=Path, default=None)
    args = parser.parse_args()
    module = NOP if args.module is None else args.module.read_bytes()
    result = asyncio.run(
        asyncio.wait_for(run(args.agents, args.nodes, args.concurrency, module), args.timeout)
    )
    result["machine"] = {"python": platform.python_version(), "cpus": _cpus()}
    print(json.dumps(result, indent=2))


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
