"""Agent deploys and density: one node, real SQLite, real wasmtime, the committed echo agent.

    python bench/bench_agents.py [--agents 10000] [--deploy-runs 20]

Prints JSON with:

* ``deploy_cold_ms``: deploy of ``examples/agents/echo.wasm`` (~30 KB) into a node whose module
  cache is empty (validation + Cranelift compile + store + start); median of fresh nodes;
* ``deploy_cached_ms``: deploy of the same bytes under new names (module from the cache);
* ``hibernation``: hibernate + restore of an agent with 1 MiB of linear memory
  (``tests/fixtures/wat/bigmem.wat``) through the node's SQLite snapshots;
* ``density``: ``--agents`` echo agents (``a-00000`` ...) deployed on one node, then one message
  to each in turn, counting replies; deploy rate, wall time, and the process RSS. The node's
  ``memory_limit`` / ``memory_pressure_threshold`` make maintenance hibernate the least recently
  used agents so live instances stay bounded; every agent still answers (its next message
  restores it).

Targets: cold < 150 ms, cached < 20 ms; 10,000 agents under 1 GB RSS, all answering.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from caxton.agents import DeployRequest
from caxton.config import Config, CoordinationConfig, RuntimeConfig
from caxton.node import Node

ROOT = Path(__file__).resolve().parents[1]
ECHO = (ROOT / "examples" / "agents" / "echo.wasm").read_bytes()


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _config(data_dir: Path, **runtime: Any) -> Config:
    return Config(
        runtime=RuntimeConfig(**runtime),
        coordination=CoordinationConfig(local_state_path=data_dir / "local.db"),
    )


async def deploy_times(runs: int) -> dict[str, float]:
    """Median cold (empty cache, fresh node) and cached deploy times in milliseconds."""
    cold: list[float] = []
    cached: list[float] = []
    for _ in range(max(1, runs // 4)):
        with tempfile.TemporaryDirectory() as tmp:
            node = Node(_config(Path(tmp)))
            await node.start()
            try:
                t0 = time.perf_counter()
                await node.agents.deploy(DeployRequest(name="cold", wasm=ECHO))
                cold.append((time.perf_counter() - t0) * 1000)
                for i in range(runs):
                    t0 = time.perf_counter()
                    await node.agents.deploy(DeployRequest(name=f"warm-{i}", wasm=ECHO))
                    cached.append((time.perf_counter() - t0) * 1000)
            finally:
                await node.aclose()
    return {
        "deploy_cold_ms": statistics.median(cold),
        "deploy_cached_ms": statistics.median(cached),
        "deploy_cached_p90_ms": sorted(cached)[int(len(cached) * 0.9)],
        "module_bytes": len(ECHO),
    }


async def density(count: int, live_budget: int) -> dict[str, Any]:
    """Deploy ``count`` echo agents, then send one message to each in turn."""
    replies = 0
    done = asyncio.Event()

    def external(receiver: str, data: bytes) -> None:
        nonlocal replies
        replies += 1
        if replies >= count:
            done.set()

    with tempfile.TemporaryDirectory() as tmp:
        node = Node(
            _config(
                Path(tmp),
                max_agents=count + 10,
                memory_limit=live_budget,
                memory_pressure_threshold=0.5,
                gc_interval=0.5,
                mailbox_capacity=16,
            )
        )
        node.on_external_message = external
        rss_before = _rss_bytes()
        await node.start()
        try:
            t0 = time.perf_counter()
            names = [f"a-{i:05d}" for i in range(count)]
            batch = 64
            for i in range(0, count, batch):
                await asyncio.gather(
                    *(
                        node.agents.deploy(DeployRequest(name=n, wasm=ECHO))
                        for n in names[i : i + batch]
                    )
                )
            deploy_s = time.perf_counter() - t0
            rss_deployed = _rss_bytes()
            t1 = time.perf_counter()
            rss_peak = rss_deployed
            for i, name in enumerate(names):
                body = {
                    "receiver": name,
                    "sender": "bench",
                    "performative": "request",
                    "content": i,
                }
                await node.runtime.deliver(name, json.dumps(body).encode(), wait=5.0)
                if i % 500 == 0:
                    rss_peak = max(rss_peak, _rss_bytes())
                    await asyncio.sleep(0)
            async with asyncio.timeout(120):
                await done.wait()
            answer_s = time.perf_counter() - t1
            rss_peak = max(rss_peak, _rss_bytes())
            stats = node.runtime.statistics()
            return {
                "agents": count,
                "deploy_seconds": deploy_s,
                "deploys_per_second": count / deploy_s,
                "replies": replies,
                "answer_seconds": answer_s,
                "messages_per_second": count / answer_s,
                "rss_before_node_mb": rss_before / 2**20,
                "rss_after_deploy_mb": rss_deployed / 2**20,
                "rss_peak_mb": rss_peak / 2**20,
                "live_instances_at_end": stats.agents_active,
                "hibernated_at_end": stats.agents_hibernated,
                "hibernations": stats.hibernations,
                "instance_memory_budget_mb": live_budget / 2**20,
            }
        finally:
            await node.aclose()


BIGMEM = ROOT / "tests" / "fixtures" / "wat" / "bigmem.wat"


async def hibernation(rounds: int) -> dict[str, Any]:
    """Hibernate + restore of an agent with 1 MiB of linear memory, through SQLite.

    ``hibernate``: the instance's memory saved to the state file and the instance dropped;
    ``restore``: the next message brings it back (memory loaded, new instance) and is answered.
    """
    import wasmtime

    wasm = bytes(wasmtime.wat2wasm(BIGMEM.read_text()))
    replies: asyncio.Queue[bytes] = asyncio.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(_config(Path(tmp), gc_interval=3600.0, agent_idle_timeout=3600.0))
        node.on_external_message = lambda receiver, data: replies.put_nowait(data)
        await node.start()
        try:
            await node.agents.deploy(DeployRequest(name="big", wasm=wasm))
            body = json.dumps({"receiver": "big", "sender": "bench", "performative": "request"})
            hibernate: list[float] = []
            restore: list[float] = []
            plain: list[float] = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                await node.runtime.deliver("big", body.encode())
                await replies.get()
                plain.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                assert await node.runtime.hibernate("big")
                hibernate.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                await node.runtime.deliver("big", body.encode())
                last = await replies.get()
                restore.append((time.perf_counter() - t0) * 1000)
            memory = node.runtime.agent_statistics("big").memory_bytes
        finally:
            await node.aclose()
    return {
        "memory_bytes": memory,
        "hibernate_ms": statistics.median(hibernate),
        "restore_and_answer_ms": statistics.median(restore),
        "plain_message_ms": statistics.median(plain),
        "hibernate_plus_restore_ms": statistics.median(hibernate) + statistics.median(restore),
        "last_reply": json.loads(last)["content"],
        "rounds": rounds,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--deploy-runs", type=int, default=20)
    parser.add_argument("--live-budget-mb", type=int, default=256)
    parser.add_argument("--hibernate-rounds", type=int, default=50)
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "agents"}
    result.update(await deploy_times(args.deploy_runs))
    result["hibernation"] = await hibernation(args.hibernate_rounds)
    result["density"] = await density(args.agents, args.live_budget_mb << 20)
    result["targets"] = {
        "deploy_cold_ms": 150,
        "deploy_cached_ms": 20,
        "hibernate_plus_restore_ms": 5.0,
        "density_rss_mb": 1024,
        "density_replies": args.agents,
    }
    result["machine"] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": __import__("os").cpu_count(),
    }
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    asyncio.run(main())
