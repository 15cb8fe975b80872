"""Ping/pong throughput with the pong written in each language, in one run, JSON out.

The C ``ping`` (``examples/agents/ping.wasm``) plays N request/inform round trips against one
``pong`` per language, all deployed in the same `Runtime`; the languages take turns run after
run, so each sees the same machine phase. Prints each language's msgs/s (best, median, runs),
its median ratio to C's (the goal: within 10 %, a ratio >= 0.9), the pong module's size, and
with ``--instructions`` the instructions per message (valgrind, see `bench_instructions`).

    python bench/bench_languages.py [--rounds 20000] [--runs 5] [--workers 4] [--instructions]
    python bench/bench_languages.py --pong mine=path/to/pong.wasm    (one more language)

A language is one entry in `PONGS` (or a ``--pong NAME=FILE``): a reactor module that answers
every ``request`` with ``inform`` and the same content.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path

from _floor import summary  # bench/ is on sys.path when run as a script
from bench_instructions import per_message

from caxton.config.schema import RuntimeConfig
from caxton.runtime import AgentSpec, Engine, Runtime

ROOT = Path(__file__).resolve().parents[1]
AGENTS = ROOT / "examples" / "agents"

#: The pong of each language. C first: the others are compared with it.
PONGS: dict[str, Path] = {
    "c": AGENTS / "pong.wasm",
    "rust": AGENTS / "rust" / "pong.wasm",
    "assemblyscript": AGENTS / "assemblyscript" / "pong.wasm",
}


async def play(runtime: Runtime, inbox: asyncio.Queue[bytes], peer: str, rounds: int) -> float:
    """msgs/s of ping playing ``rounds`` round trips with ``peer``."""
    start = {
        "receiver": "ping",
        "sender": "client",
        "performative": "request",
        "content": {"op": "start", "peer": peer, "n": rounds},
    }
    started = time.perf_counter()
    runtime.deliver_nowait("ping", json.dumps(start).encode())
    done = json.loads(await asyncio.wait_for(inbox.get(), 120))
    elapsed = time.perf_counter() - started
    assert done["content"] == {"done": rounds}, done
    return 2 * rounds / elapsed


def _pongs(extra: list[str]) -> dict[str, Path]:
    pongs = dict(PONGS)
    for item in extra:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise SystemExit(f"--pong {item!r}: expected NAME=FILE")
        pongs[name] = Path(file)
    for name, path in pongs.items():
        if not path.is_file():
            raise SystemExit(f"the {name} pong {path} does not exist: run scripts/build-agents.sh")
    return pongs


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--pong", action="append", default=[], metavar="NAME=FILE")
    parser.add_argument("--instructions", action="store_true", help="also count (valgrind)")
    args = parser.parse_args()
    pongs = _pongs(args.pong)

    config = RuntimeConfig(max_concurrent_executions=args.workers)
    engine = Engine(config, cache_dir=None)
    inbox: asyncio.Queue[bytes] = asyncio.Queue()
    results: dict[str, list[float]] = {name: [] for name in pongs}
    async with Runtime(config, engine=engine, external=lambda r, d: inbox.put_nowait(d)) as rt:
        for name, path in pongs.items():
            await rt.start_agent(AgentSpec(name=f"pong-{name}"), engine.compile(path.read_bytes()))
        await rt.start_agent(
            AgentSpec(name="ping"), engine.compile((AGENTS / "ping.wasm").read_bytes())
        )
        for name in pongs:  # warm up
            await play(rt, inbox, f"pong-{name}", 1000)
        for _ in range(args.runs):
            for name in pongs:
                results[name].append(await play(rt, inbox, f"pong-{name}", args.rounds))
    engine.close()

    languages: dict[str, dict[str, object]] = {}
    for name, path in pongs.items():
        ratios = [x / c for x, c in zip(results[name], results["c"], strict=True)]
        entry: dict[str, object] = {
            "module": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
            "module_bytes": path.stat().st_size,
            "msgs_per_s": summary(results[name]),
            "ratio_to_c": round(statistics.median(ratios), 3),
        }
        if args.instructions:
            entry["instructions_per_message"] = per_message(500, 2500, False, path)
        languages[name] = entry
    print(
        json.dumps(
            {
                "benchmark": "languages",
                "python": platform.python_version(),
                "rounds": args.rounds,
                "messages_per_run": 2 * args.rounds,
                "workers": args.workers,
                "languages": languages,
                "targets": {"ratio_to_c": 0.9},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
