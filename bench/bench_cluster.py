"""Messages across two nodes (two processes, each with its nats-server) beside one node.

Node ``a`` runs in this process, node ``b`` in a child process (``--serve``); placement is set
on both with a fixed directory. Measured in one run, side by side:

* ``split``: PAIRS ping/pong games with every ping on a and every pong on b (msgs/s);
* ``local``: the same PAIRS games with ping and pong both on a (msgs/s);
* ``pair_round_trip``: one ping/pong pair alone (ping on a, pong on b): the time from one of
  ping's requests to the next, i.e. agent to agent and back, p50/p99 in ms (10 x SAMPLES);
* ``round_trip``: one message at a time from an API client on a to ``echo`` on b and its reply back
  (``Messaging.submit(wait=True)``), p50/p99 in ms;
* ``api_wait``: ``POST /api/v1/messages?wait=5s`` to a for ``echo`` on b over HTTP, p50/p99.

    python bench/bench_cluster.py [--pairs 64] [--rounds 500] [--samples 300] [--runs 5]
        [--secret]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from _ports import free_port  # bench/ is on sys.path when run as a script
from _proc import cpu_seconds
from aiohttp.test_utils import TestServer

from caxton.agents import DeployRequest
from caxton.api.app import create_app
from caxton.cluster.directory import FixedDirectory
from caxton.config import Config, CoordinationConfig
from caxton.config.schema import Address, Secret
from caxton.node import Node

ROOT = Path(__file__).resolve().parents[1]
AGENTS = ROOT / "examples" / "agents"


def placement(pairs: int) -> dict[str, str]:
    owners = {"echo": "b"}
    for i in range(pairs):
        owners |= {f"ping-{i}": "a", f"pong-{i}": "b", f"lping-{i}": "a", f"lpong-{i}": "a"}
    return owners


def make_node(name: str, state: Path, port: int, seed: int) -> Node:
    secret = os.environ.get("BENCH_CLUSTER_SECRET")
    keys = CoordinationConfig(
        cluster_secret=None if secret is None else Secret(secret),
        cluster_enabled=True,
        bind_addr=Address("127.0.0.1", port),
        seeds=(f"127.0.0.1:{seed}",),
        node_name=name,
        local_state_path=state,
        probe_interval=0.5,
    )
    return Node(Config(coordination=keys))


async def deploy(node: Node, name: str, module: str) -> None:
    wasm = (AGENTS / f"{module}.wasm").read_bytes()
    await node.agents.deploy(DeployRequest(name=name, wasm=wasm))


async def serve_b(state: Path, port: int, seed: int, pairs: int) -> None:
    """The child: node b with echo and the pongs, until stdin closes."""
    node = make_node("b", state, port, seed)
    await node.start()
    assert node.cluster is not None
    node.cluster.directory = FixedDirectory(placement(pairs))
    await deploy(node, "echo", "echo")
    for i in range(pairs):
        await deploy(node, f"pong-{i}", "pong")
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await node.aclose()


async def games(node: Node, pings: list[str], pongs: list[str], rounds: int) -> float:
    """msgs/s of the games ping[i] <-> pong[i], all at once."""
    waiters = []
    started = time.perf_counter()
    for ping, pong in zip(pings, pongs, strict=True):
        accepted = await node.messaging.submit(
            {
                "receiver": ping,
                "performative": "request",
                "content": {"op": "start", "peer": pong, "n": rounds},
            },
            wait=True,
        )
        assert accepted.reply is not None
        waiters.append(accepted.reply.wait(300))
    replies = await asyncio.gather(*waiters)
    elapsed = time.perf_counter() - started
    assert all(r is not None and r["content"] == {"done": rounds} for r in replies), replies
    return 2 * rounds * len(pings) / elapsed


async def pair_round_trips(node: Node, rounds: int) -> list[float]:
    """One game of ``rounds`` exchanges between ping-0 on a and pong-0 on b, alone: the time
    between two of ping's requests is one round trip (ping's sends are timed as its worker
    records them)."""
    journal = node.messaging.journal
    marks: list[float] = []
    mark = marks.append
    clock = time.perf_counter
    record = journal.sent_remote

    def timed(conversation: str | None, data: bytes, receiver: str, owner: str) -> None:
        if receiver == "pong-0":
            mark(clock())
        record(conversation, data, receiver, owner)

    journal.sent_remote = timed  # type: ignore[method-assign,assignment]
    try:
        await games(node, ["ping-0"], ["pong-0"], rounds)
    finally:
        del journal.sent_remote
    return [later - earlier for earlier, later in itertools.pairwise(marks)]


def machine() -> dict[str, object]:
    """The machine the figures were measured on (cpu count and model)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "system": platform.platform()}


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 3),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument(
        "--runs", type=int, default=5, help="interleaved split/local runs (medians reported)"
    )
    parser.add_argument("--serve", nargs=3, metavar=("STATE", "PORT", "SEED"))
    parser.add_argument(
        "--secret", action="store_true", help="set a cluster_secret (every message signed)"
    )
    args = parser.parse_args()
    if args.secret:  # the child node reads it from its environment too
        os.environ["BENCH_CLUSTER_SECRET"] = "bench-secret"
    if args.serve:
        state, port, seed = args.serve
        await serve_b(Path(state), int(port), int(seed), args.pairs)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    port_a, port_b = free_port(), free_port()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--pairs",
        str(args.pairs),
        "--serve",
        str(work / "b" / "local.db"),
        str(port_b),
        str(port_a),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    a = make_node("a", work / "a" / "local.db", port_a, port_b)
    try:
        assert child.stdout is not None
        await a.start()
        assert a.cluster is not None
        a.cluster.directory = FixedDirectory(placement(args.pairs))
        for i in range(args.pairs):
            await deploy(a, f"ping-{i}", "ping")
            await deploy(a, f"lping-{i}", "ping")
            await deploy(a, f"lpong-{i}", "pong")
        line = await asyncio.wait_for(child.stdout.readline(), 120)
        assert line.strip() == b"ready", line
        pairs = range(args.pairs)
        await games(a, [f"ping-{i}" for i in pairs], [f"pong-{i}" for i in pairs], 50)  # warm
        remote = a.cluster_messages
        assert remote is not None
        split_pings = [f"ping-{i}" for i in pairs]
        split_pongs = [f"pong-{i}" for i in pairs]
        local_pings = [f"lping-{i}" for i in pairs]
        local_pongs = [f"lpong-{i}" for i in pairs]
        splits: list[float] = []
        locals_: list[float] = []

        def counters() -> dict[str, float]:
            """What the split games are measured by, as read now."""
            forwards, store = remote.statistics(), a.storage.statistics()
            return dict(
                cpu_a=time.process_time(),
                cpu_b=cpu_seconds(child.pid),
                commits=store.commits,
                ops=store.ops,
                reads=store.reads,
                early=forwards.early,
                early_acked=forwards.early_acknowledged,
                requests=forwards.requests,
                forwarded=forwards.forwarded,
            )

        split_total = dict.fromkeys(counters(), 0.0)  # around the split games only, over the runs
        for run in range(args.runs):
            # interleaved, in alternating order: each run's two figures share the machine's
            # phase (other load on a shared VM moves either by tens of percent)
            if run % 2:
                locals_.append(await games(a, local_pings, local_pongs, args.rounds))
            before = counters()
            splits.append(await games(a, split_pings, split_pongs, args.rounds))
            for key, value in counters().items():
                split_total[key] += value - before[key]
            if not run % 2:
                locals_.append(await games(a, local_pings, local_pongs, args.rounds))
        # messages a sent to b over all split runs (as many came back)
        crossed = args.runs * args.rounds * args.pairs
        store = {
            # node a's store per message it sent across (it received as many): the cost of
            # at-least-once that batching must spread
            "commits": round(split_total["commits"] / crossed, 3),
            "write_ops": round(split_total["ops"] / crossed, 3),
            "reads": round(split_total["reads"] / crossed, 3),
        }
        # agents' messages a sent before their outbox rows committed, and of those, the ones
        # b acknowledged at once (their rows are deleted without being sent again)
        early = {
            "sent_early": round(split_total["early"] / crossed, 3),
            "acknowledged": round(split_total["early_acked"] / crossed, 3),
        }
        # CPU time each node process spent per message it sent across (all its threads): a
        # figure that other load on the machine disturbs less than msgs/s
        cpu = {name: round(1e6 * split_total[f"cpu_{name}"] / crossed, 1) for name in "ab"}
        per_request = split_total["forwarded"] / max(1, split_total["requests"])
        ratios = [split / local for split, local in zip(splits, locals_, strict=True)]
        pair = await pair_round_trips(a, args.samples * 10)
        trips = []
        for i in range(args.samples):
            started = time.perf_counter()
            accepted = await a.messaging.submit(
                {"receiver": "echo", "performative": "request", "content": i}, wait=True
            )
            assert accepted.reply is not None
            assert await accepted.reply.wait(5) is not None
            trips.append(time.perf_counter() - started)
        server = TestServer(create_app(a))
        await server.start_server()
        waits = []
        try:
            async with aiohttp.ClientSession() as session:
                url = str(server.make_url("/api/v1/messages?wait=5s"))
                body = {"receiver": "echo", "performative": "request", "content": 0}
                for _ in range(args.samples):
                    started = time.perf_counter()
                    async with session.post(url, json=body) as answer:
                        assert answer.status == 200, await answer.text()
                        await answer.read()
                    waits.append(time.perf_counter() - started)
        finally:
            await server.close()
    finally:
        await a.aclose()
        if child.stdin is not None:
            child.stdin.close()
        await asyncio.wait_for(child.wait(), 30)
    print(
        json.dumps(
            {
                "benchmark": "cluster",
                "python": platform.python_version(),
                "machine": machine(),
                "pairs": args.pairs,
                "cluster_secret": args.secret,
                "rounds": args.rounds,
                # side by side, in this run: the same pairs split across a and b, and on a alone
                "runs": args.runs,
                "split_msgs_per_s": round(statistics.median(splits)),
                "local_msgs_per_s": round(statistics.median(locals_)),
                # the median of each run's own ratio (steadier than a ratio of medians)
                "split_vs_local": round(statistics.median(ratios), 3),
                "split_msgs_per_s_runs": [round(x) for x in splits],
                "local_msgs_per_s_runs": [round(x) for x in locals_],
                "split_messages_per_request_a_to_b": round(per_request, 1),
                "split_store_per_crossing_message_on_a": store,
                "split_early_per_crossing_message_on_a": early,
                "split_cpu_us_per_crossing_message": cpu,
                # one ping/pong pair alone: agent to agent and back, across the nodes
                "pair_round_trip": percentiles(pair),
                "round_trip": percentiles(trips),
                "api_wait": percentiles(waits),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
