"""Ping/pong messages per second with pongs written with each SDK, in one run; module sizes.

The C ``ping`` (``examples/agents/ping.wasm``) plays N request/inform round trips with a pong
built from each SDK's example: C (``examples/agents/pong.wasm``) and AssemblyScript
(``examples/agents/assemblyscript/pong.wasm``). Runs alternate between the pongs, so every pong
sees the same machine phase; each pong's median is compared with C's. Also the wasm
instructions each pong runs per message (wasmtime fuel: about one unit per instruction, the
host's work not included), counted in a bare instance whose ``send`` does nothing. Prints JSON:

    python bench/bench_sdk_pongs.py [--rounds 20000] [--runs 5] [--workers 2]

Goal: each pong within 10 % of C's messages per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path

import wasmtime

from caxton.config.schema import RuntimeConfig
from caxton.runtime import AgentSpec, Engine, Runtime

ROOT = Path(__file__).resolve().parents[1]
AGENTS = ROOT / "examples" / "agents"
#: SDK name -> its pong module.
PONGS = {
    "c": AGENTS / "pong.wasm",
    "assemblyscript": AGENTS / "assemblyscript" / "pong.wasm",
}
#: Each SDK's echo module (for sizes only).
ECHOES = {
    "c": AGENTS / "echo.wasm",
    "assemblyscript": AGENTS / "assemblyscript" / "echo.wasm",
}


async def game(runtime: Runtime, inbox: asyncio.Queue[bytes], peer: str, rounds: int) -> float:
    """msgs/s of ping playing ``rounds`` round trips with ``peer``."""
    start = json.dumps(
        {
            "receiver": "ping",
            "sender": "client",
            "performative": "request",
            "content": {"op": "start", "peer": peer, "n": rounds},
        }
    ).encode()
    started = time.perf_counter()
    runtime.deliver_nowait("ping", start)
    done = json.loads(await asyncio.wait_for(inbox.get(), 120))
    elapsed = time.perf_counter() - started
    assert done["content"] == {"done": rounds}, done
    return 2 * rounds / elapsed


#: A message as ping's requests reach pong (the host's envelope fields included).
SAMPLE = json.dumps(
    {
        "sender": "ping",
        "message_id": "3fa2c140-22",
        "created_at": "2026-12-04T12:36:03.910Z",
        "conversation_id": "3fa2c140-1",
        "receiver": "pong",
        "performative": "request",
        "content": {"i": 12345},
    },
    separators=(",", ":"),
).encode()


def fuel_per_message(path: Path, messages: int = 1000) -> float:
    """Wasm instructions (fuel) ``caxton_alloc`` + ``caxton_handle`` take for `SAMPLE`."""
    config = wasmtime.Config()
    config.consume_fuel = True
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    store.set_fuel(1 << 40)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    i32 = wasmtime.ValType.i32()
    send = wasmtime.FuncType([i32, i32], [i32])
    linker.define_func("caxton", "send", send, lambda ptr, length: 0)
    linker.define_func("caxton", "log", wasmtime.FuncType([i32] * 3, []), lambda *_: None)
    exports = linker.instantiate(store, wasmtime.Module.from_file(engine, str(path))).exports(store)
    init, alloc, handle = (exports.get(n) for n in ("_initialize", "caxton_alloc", "caxton_handle"))
    memory = exports["memory"]
    assert isinstance(alloc, wasmtime.Func)
    assert isinstance(handle, wasmtime.Func)
    assert isinstance(memory, wasmtime.Memory)
    if isinstance(init, wasmtime.Func):
        init(store)

    def one() -> None:
        ptr = alloc(store, len(SAMPLE))
        memory.write(store, SAMPLE, ptr)
        assert handle(store, ptr, len(SAMPLE)) == 0

    one()
    before = store.get_fuel()
    for _ in range(messages):
        one()
    return (before - store.get_fuel()) / messages


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    config = RuntimeConfig(max_concurrent_executions=args.workers)
    engine = Engine(config, cache_dir=None)
    inbox: asyncio.Queue[bytes] = asyncio.Queue()
    rates: dict[str, list[float]] = {sdk: [] for sdk in PONGS}
    async with Runtime(config, engine=engine, external=lambda r, d: inbox.put_nowait(d)) as rt:
        ping = await asyncio.to_thread(engine.compile, (AGENTS / "ping.wasm").read_bytes())
        await rt.start_agent(AgentSpec(name="ping"), ping)
        for sdk, path in PONGS.items():
            compiled = await asyncio.to_thread(engine.compile, path.read_bytes())
            await rt.start_agent(AgentSpec(name=f"pong-{sdk}"), compiled)
            await game(rt, inbox, f"pong-{sdk}", 1000)  # warm up
        for _ in range(args.runs):
            for sdk in PONGS:
                rates[sdk].append(await game(rt, inbox, f"pong-{sdk}", args.rounds))
    engine.close()
    c_median = statistics.median(rates["c"])
    print(
        json.dumps(
            {
                "benchmark": "sdk_pongs",
                "python": platform.python_version(),
                "rounds": args.rounds,
                "runs": args.runs,
                "workers": args.workers,
                "msgs_per_s": {
                    sdk: {
                        "median": round(statistics.median(r)),
                        "best": round(max(r)),
                        "vs_c": round(statistics.median(r) / c_median, 3),
                    }
                    for sdk, r in rates.items()
                },
                "wasm_instructions_per_message": {
                    sdk: round(fuel_per_message(path)) for sdk, path in PONGS.items()
                },
                "module_bytes": {
                    sdk: {"pong": PONGS[sdk].stat().st_size, "echo": ECHOES[sdk].stat().st_size}
                    for sdk in PONGS
                },
                "goal": "each SDK's pong within 10 % of C (vs_c >= 0.9)",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
