"""Instructions per agent-to-agent message, counted by valgrind (callgrind), JSON out.

Wall-clock throughput on a shared VM moves by ±30% between runs (the notes call it the fast
and the slow phase), which hides a 5-10% change. Instruction counts do not move: this runs the
ping/pong game of `bench_pingpong` (bare runtime) or `bench_messaging` (``--stack``: routing,
journal, SQLite) under ``valgrind --tool=callgrind`` for two game lengths, and prints the
difference per message on the busiest thread (the worker) and over all threads.
Use it to compare two versions of the hot path:

    python bench/bench_instructions.py [--stack [--traced]] [--short 500] [--long 2500]
                                       [--pong FILE]

``--pong FILE`` plays against another pong module (another language's: `bench_languages`).
``--traced`` (with ``--stack``) starts the game with a sampled ``traceparent`` and records its
spans to a `SpanLog` (not shipped): every message of the game is traced, so the difference
against the same command without it is what tracing costs one message in the node.

Needs valgrind (``apt-get install valgrind``); takes about a minute. Counts include work that
depends on elapsed time, which valgrind's ~50x slowdown inflates (the ``created_at`` string is
formatted per millisecond, so here for every message): treat them as relative figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AGENTS = ROOT / "examples" / "agents"


async def game(
    rounds: int, stack: bool, pong: Path = AGENTS / "pong.wasm", traced: bool = False
) -> None:
    """One ping/pong game of ``rounds`` round trips (the process valgrind runs)."""
    from caxton.config.schema import Config, RuntimeConfig
    from caxton.runtime import AgentSpec, Engine, Runtime

    config = RuntimeConfig(max_concurrent_executions=1, mailbox_capacity=100000)
    engine = Engine(config, cache_dir=None)
    start = {
        "receiver": "ping",
        "performative": "request",
        "content": {"op": "start", "peer": "pong", "n": rounds},
    }
    if not stack:
        inbox: asyncio.Queue[bytes] = asyncio.Queue()
        async with Runtime(config, engine=engine, external=lambda r, d: inbox.put_nowait(d)) as rt:
            for name, path in (("pong", pong), ("ping", AGENTS / "ping.wasm")):
                compiled = engine.compile(path.read_bytes())
                await rt.start_agent(AgentSpec(name=name), compiled)
            rt.deliver_nowait("ping", json.dumps({**start, "sender": "client"}).encode())
            done = json.loads(await asyncio.wait_for(inbox.get(), 3600))
    else:
        from caxton.messaging import Messaging
        from caxton.runtime.tracing import SpanLog
        from caxton.storage import AgentRecord, Storage

        spans = SpanLog(limit=8 * rounds) if traced else None
        traceparent = f"00-{'ab' * 16}-{'cd' * 8}-01" if traced else None

        with tempfile.TemporaryDirectory() as tmp:
            storage = await Storage.open(Path(tmp) / "local.db")
            messaging = Messaging(
                Config(runtime=config),
                storage,
                runtime=lambda m: Runtime(config, engine=engine, delivery=m, events=m, spans=spans),
            )
            runtime = messaging.runtime
            await runtime.start()
            await messaging.start()
            for name, path in (("pong", pong), ("ping", AGENTS / "ping.wasm")):
                await storage.agents.create(AgentRecord(name=name), b"\0asm\x01\0\0\0")
                compiled = engine.compile(path.read_bytes())
                await runtime.start_agent(AgentSpec(name=name), compiled)
            accepted = await messaging.submit(
                start, client="bench", wait=True, traceparent=traceparent
            )
            assert accepted.reply is not None
            done = await accepted.reply.wait(3600) or {}
            await runtime.aclose()
            await messaging.aclose()
            await storage.aclose()
            if spans is not None:  # every message was traced, none was dropped
                assert not spans.dropped, spans.dropped
                assert len(spans.records) >= 2 * rounds, len(spans.records)
    engine.close()
    assert done["content"] == {"done": rounds}, done


def _totals(prefix: Path) -> dict[int, int]:
    """Instructions per thread from callgrind's ``--separate-threads`` output files."""
    totals: dict[int, int] = {}
    for path in prefix.parent.glob(prefix.name + "-*"):
        thread = int(path.name.rsplit("-", 1)[1])
        found = re.search(r"^(?:totals|summary): (\d+)", path.read_text(), re.MULTILINE)
        if found:
            totals[thread] = int(found.group(1))
    return totals


def measure(
    rounds: int, stack: bool, out: Path, pong: Path = AGENTS / "pong.wasm", traced: bool = False
) -> dict[int, int]:
    """Run one game under callgrind; instructions per thread."""
    prefix = out / f"cg.{pong.parent.name}.{pong.stem}.{rounds}{'.traced' if traced else ''}"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--separate-threads=yes",
        "--smc-check=all-non-file",  # wasmtime writes the code it runs
        f"--callgrind-out-file={prefix}",
        sys.executable,
        __file__,
        "--game",
        str(rounds),
        *(["--stack"] if stack else []),
        *(["--traced"] if traced else []),
        "--pong",
        str(pong),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"valgrind run failed:\n{result.stderr[-2000:]}")
    return _totals(prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stack", action="store_true", help="through Messaging and SQLite")
    parser.add_argument("--short", type=int, default=500)
    parser.add_argument("--long", type=int, default=2500)
    parser.add_argument("--pong", type=Path, default=AGENTS / "pong.wasm")
    parser.add_argument(
        "--traced", action="store_true", help="every message traced (needs --stack)"
    )
    parser.add_argument("--game", type=int, help=argparse.SUPPRESS)  # the measured child
    args = parser.parse_args()
    if args.traced and not args.stack:
        parser.error("--traced needs --stack (spans are recorded by the messaging stack)")
    if args.game is not None:
        asyncio.run(game(args.game, args.stack, args.pong, args.traced))
        return
    print(
        json.dumps(
            {
                "benchmark": "instructions",
                "stack": args.stack,
                "traced": args.traced,
                "pong": str(args.pong),
                "messages": 2 * (args.long - args.short),
                "instructions_per_message": per_message(
                    args.short, args.long, args.stack, args.pong, args.traced
                ),
            },
            indent=2,
        )
    )


def per_message(
    short_rounds: int, long_rounds: int, stack: bool, pong: Path, traced: bool = False
) -> dict[str, int]:
    """Instructions per message against ``pong``: on the busiest thread and on all threads."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    with tempfile.TemporaryDirectory() as tmp:
        short = measure(short_rounds, stack, Path(tmp), pong, traced)
        long = measure(long_rounds, stack, Path(tmp), pong, traced)
    messages = 2 * (long_rounds - short_rounds)
    # The busiest thread is the worker running the game (threads are numbered in creation
    # order, the same in both runs for the ones that matter); the sum over all threads too.
    busiest = max(count - short.get(thread, 0) for thread, count in long.items())
    return {
        "busiest_thread": round(busiest / messages),
        "all_threads": round((sum(long.values()) - sum(short.values())) / messages),
    }


if __name__ == "__main__":
    main()
