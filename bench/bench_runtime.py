"""Runtime costs: instantiate, deploy (cold vs cached), hibernate + restore, idle memory.

Prints JSON:

    python bench/bench_runtime.py [--instances 200] [--idle-agents 1000]

* ``instantiate_ms``: a new instance of a compiled ~30 KB C reactor (``examples/agents/echo``):
  store with limits, WASI context, instantiate through the pre-linked module, ``_initialize``;
  median over ``--instances`` runs.
* ``deploy_ms``: compile-or-load + start of the same module: ``cold`` (new engine, empty cache
  directory), ``disk`` (new engine, cache directory filled by the cold run: a node restart),
  ``memory`` (same engine: a redeploy).
* ``hibernate_restore_ms``: an agent with 1 MiB of linear memory (``tests/fixtures/wat/bigmem``):
  `Runtime.hibernate`, then the first message (restore + handle) minus a normal message.
* ``idle_instance_kib``: RSS growth per started-and-idle echo agent.

Targets: instantiate median < 1 ms; deploy < 150 ms cold and < 20 ms cached;
hibernate + restore of 1 MiB < 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import wasmtime

from caxton.config.schema import RuntimeConfig
from caxton.runtime import AgentSpec, Engine, Runtime

ROOT = Path(__file__).resolve().parents[1]
ECHO = (ROOT / "examples" / "agents" / "echo.wasm").read_bytes()
BIGMEM = bytes(wasmtime.wat2wasm((ROOT / "tests" / "fixtures" / "wat" / "bigmem.wat").read_text()))


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


class Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def external(self, receiver: str, data: bytes) -> None:
        self.queue.put_nowait(data)


def request(receiver: str) -> bytes:
    return json.dumps(
        {"receiver": receiver, "sender": "client", "performative": "request"}
    ).encode()


async def bench_instantiate(config: RuntimeConfig, n: int) -> dict[str, float]:
    engine = Engine(config, cache_dir=None)
    async with Runtime(config, engine=engine) as rt:
        compiled = engine.compile(ECHO)
        await rt.start_agent(AgentSpec(name="echo"), compiled)
        assert rt._scheduler is not None
        worker = rt._scheduler.workers[0]
        agent = rt._agents["echo"]
        plain, initialised = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            inst = worker.lifecycle.instantiate(agent)
            t1 = time.perf_counter()
            inst.call_optional("_initialize", 100)
            t2 = time.perf_counter()
            inst.close()
            plain.append((t1 - t0) * 1000)
            initialised.append((t2 - t0) * 1000)
    engine.close()
    return {
        "median": round(statistics.median(plain), 3),
        "median_with_initialize": round(statistics.median(initialised), 3),
        "p90": round(sorted(plain)[int(0.9 * n)], 3),
    }


async def deploy_once(config: RuntimeConfig, engine: Engine) -> float:
    inbox = Inbox()
    async with Runtime(config, engine=engine, external=inbox.external) as rt:
        t0 = time.perf_counter()
        compiled = await asyncio.to_thread(engine.compile, ECHO)
        await rt.start_agent(AgentSpec(name="echo"), compiled)
        elapsed = time.perf_counter() - t0
    return elapsed * 1000


async def bench_deploy(config: RuntimeConfig) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cold_engine = Engine(config, cache_dir=Path(tmp))
        cold = await deploy_once(config, cold_engine)
        memory = await deploy_once(config, cold_engine)
        cold_engine.close()
        disk_engine = Engine(config, cache_dir=Path(tmp))
        disk = await deploy_once(config, disk_engine)
        disk_engine.close()
    return {"cold": round(cold, 2), "disk": round(disk, 2), "memory": round(memory, 2)}


async def bench_hibernate(config: RuntimeConfig, rounds: int = 20) -> dict[str, float]:
    engine = Engine(config, cache_dir=None)
    inbox = Inbox()
    hib: list[float] = []
    restore: list[float] = []
    normal: list[float] = []
    async with Runtime(config, engine=engine, external=inbox.external) as rt:
        await rt.start_agent(AgentSpec(name="big"), engine.compile(BIGMEM))
        expected = 0
        for _ in range(rounds):
            for bucket in (normal, None, restore):
                if bucket is None:
                    t0 = time.perf_counter()
                    assert await rt.hibernate("big")
                    hib.append((time.perf_counter() - t0) * 1000)
                    continue
                t0 = time.perf_counter()
                rt.deliver_nowait("big", request("big"))
                reply = json.loads(await inbox.queue.get())
                bucket.append((time.perf_counter() - t0) * 1000)
                expected += 1
                assert reply["content"] == expected, reply
    engine.close()
    h, r, m = (statistics.median(x) for x in (hib, restore, normal))
    return {
        "hibernate": round(h, 3),
        "restore_extra": round(r - m, 3),
        "total": round(h + r - m, 3),
        "first_message_after_restore": round(r, 3),
        "normal_message": round(m, 3),
    }


async def bench_idle(config: RuntimeConfig, n: int) -> dict[str, float]:
    engine = Engine(config, cache_dir=None)
    async with Runtime(config, engine=engine) as rt:
        compiled = engine.compile(ECHO)
        await rt.start_agent(AgentSpec(name="warm"), compiled)
        before = rss_kib()
        t0 = time.perf_counter()
        for i in range(n):
            await rt.start_agent(AgentSpec(name=f"a{i}"), compiled)
        started = time.perf_counter() - t0
        after = rss_kib()
        stats = rt.statistics()
    engine.close()
    return {
        "agents": n,
        "rss_growth_kib_per_agent": round((after - before) / n, 1),
        "linear_memory_kib_per_agent": round(stats.memory_bytes / (n + 1) / 1024, 1),
        "start_agent_ms_each": round(started / n * 1000, 3),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--idle-agents", type=int, default=1000)
    args = parser.parse_args()
    config = RuntimeConfig(max_concurrent_executions=2, max_agents=100_000)
    result = {
        "benchmark": "runtime",
        "module_bytes": len(ECHO),
        "instantiate_ms": await bench_instantiate(config, args.instances),
        "deploy_ms": await bench_deploy(config),
        "hibernate_restore_ms": await bench_hibernate(config),
        "idle": await bench_idle(config, args.idle_agents),
        "targets": {
            "instantiate_median_ms": 1.0,
            "deploy_cold_ms": 150,
            "deploy_cached_ms": 20,
            "hibernate_restore_ms": 5.0,
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
