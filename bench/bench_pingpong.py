"""Agent-to-agent throughput through real wasm, beside a bare asyncio.Queue ping-pong.

Two C reactor agents (``examples/agents/ping.wasm`` and ``pong.wasm``) play N request/inform
round trips inside a running `Runtime` (worker threads, mailboxes, envelope stamping, routing,
counters). In the same process and interleaved with it, two asyncio tasks ping-pong N times
through `asyncio.Queue` (the floor the notes compare with). Prints JSON:

    python bench/bench_pingpong.py [--rounds 20000] [--runs 5] [--workers 4]

Targets: >= 50,000 msgs/s (aim 100,000) and >= 0.3 of the asyncio ping-pong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path

from _floor import asyncio_floor, compare_to_floor  # bench/ is on sys.path when run as a script

from caxton.config.schema import RuntimeConfig
from caxton.runtime import AgentSpec, Engine, Runtime

ROOT = Path(__file__).resolve().parents[1]
AGENTS = ROOT / "examples" / "agents"


async def runtime_pingpong(runtime: Runtime, inbox: asyncio.Queue[bytes], rounds: int) -> float:
    """msgs/s of ping and pong playing ``rounds`` request/inform round trips."""
    start = json.dumps(
        {
            "receiver": "ping",
            "sender": "client",
            "performative": "request",
            "content": {"op": "start", "peer": "pong", "n": rounds},
        }
    ).encode()
    before = runtime.statistics().executions["ok"]
    started = time.perf_counter()
    runtime.deliver_nowait("ping", start)
    done = json.loads(await asyncio.wait_for(inbox.get(), 120))
    elapsed = time.perf_counter() - started
    assert done["content"] == {"done": rounds}, done
    handled = runtime.statistics().executions["ok"] - before
    assert handled == 2 * rounds + 1, handled
    return 2 * rounds / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    config = RuntimeConfig(max_concurrent_executions=args.workers)
    engine = Engine(config, cache_dir=None)
    inbox: asyncio.Queue[bytes] = asyncio.Queue()
    async with Runtime(config, engine=engine, external=lambda r, d: inbox.put_nowait(d)) as rt:
        for name in ("pong", "ping"):
            compiled = engine.compile((AGENTS / f"{name}.wasm").read_bytes())
            await rt.start_agent(AgentSpec(name=name), compiled)
        await runtime_pingpong(rt, inbox, 1000)  # warm up
        agents, floor = [], []
        for _ in range(args.runs):  # interleaved, so both see the same machine phase
            agents.append(await runtime_pingpong(rt, inbox, args.rounds))
            floor.append(await asyncio_floor(args.rounds))
    engine.close()
    print(
        json.dumps(
            {
                "benchmark": "pingpong",
                "python": platform.python_version(),
                "rounds": args.rounds,
                "messages_per_run": 2 * args.rounds,
                "workers": args.workers,
                **compare_to_floor(agents, floor),
                "targets": {"msgs_per_s": 50000, "aim": 100000, "ratio": 0.3},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
