"""Time for a joining node to see the whole registry of N agents (default 10,000).

Two real nats-server children routed to each other on loopback (`ClusterLink`, as a node makes
them). Node "host" lists N agents (a harness: registry entries without wasm, announced by a
real `Registry` on its real NATS connection). Node "joiner" starts its `Registry` on the other
server; the clock runs from its start until it lists all N agents of "host" (it waits for the
next digest of "host", at most one ``gossip_interval``, then pulls the list in pages over NATS
request/reply). Prints JSON:

    python bench/bench_registry.py [--agents 10000] [--runs 5] [--gossip-interval 0.2]

Goal: under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from _ports import free_port  # bench/ is on sys.path when run as a script

from caxton.agents.changes import AgentSummary
from caxton.cluster.link import ClusterLink
from caxton.cluster.registry import Registry
from caxton.config.schema import Address, CoordinationConfig


class Listed:
    """N agents of a harness node (what the registry reads of an AgentService)."""

    def __init__(self, count: int) -> None:
        now = time.time()
        self.agents = {
            f"agent-{i:06}": AgentSummary(f"agent-{i:06}", "running", 1, now, now)
            for i in range(count)
        }

    def names(self) -> list[str]:
        return list(self.agents)

    def summary(self, name: str) -> AgentSummary | None:
        return self.agents.get(name)


def _config(
    directory: Path, name: str, port: int, seeds: tuple[int, ...], gossip: float
) -> CoordinationConfig:
    return CoordinationConfig(
        cluster_enabled=True,
        node_name=name,
        local_state_path=directory / name / "local.db",
        bind_addr=Address("127.0.0.1", port),
        seeds=tuple(f"127.0.0.1:{seed}" for seed in seeds),
        gossip_interval=gossip,
        probe_interval=0.2,
    )


async def _run(count: int, gossip: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="caxton-bench-registry-") as tmp:
        directory = Path(tmp)
        ports = free_port(), free_port()
        host_link = ClusterLink(_config(directory, "host", ports[0], ports, gossip))
        joiner_link = ClusterLink(_config(directory, "joiner", ports[1], ports, gossip))
        await host_link.start()
        await joiner_link.start()
        try:
            host = Registry(
                "host",
                host_link.membership.incarnation,
                host_link.bus,
                local=Listed(count),
                gossip_interval=gossip,
            )
            await host.start()
            await asyncio.sleep(0.5)  # the routes are up
            empty = Listed(0)
            joiner = Registry(
                "joiner",
                joiner_link.membership.incarnation,
                joiner_link.bus,
                local=empty,
                gossip_interval=gossip,
            )
            started = time.perf_counter()
            await joiner.start()
            while True:
                if joiner.count("host") >= count:
                    break
                await asyncio.sleep(0.001)
            seen = time.perf_counter() - started
            pulled = time.perf_counter()
            await joiner._pull_from("host")  # one more pull alone: the transfer itself
            pull = time.perf_counter() - pulled
            await joiner.aclose()
            await host.aclose()
            return {"seen_s": seen, "pull_s": pull}
        finally:
            await joiner_link.aclose()
            await host_link.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--gossip-interval", type=float, default=0.2)
    args = parser.parse_args()
    runs = [asyncio.run(_run(args.agents, args.gossip_interval)) for _ in range(args.runs)]
    seen = [r["seen_s"] for r in runs]
    pull = [r["pull_s"] for r in runs]
    print(
        json.dumps(
            {
                "benchmark": "registry_join",
                "agents": args.agents,
                "gossip_interval_s": args.gossip_interval,
                "join_to_full_registry_s": {
                    "median": round(statistics.median(seen), 4),
                    "max": round(max(seen), 4),
                    "runs": [round(x, 4) for x in seen],
                },
                "pull_only_s": {
                    "median": round(statistics.median(pull), 4),
                    "max": round(max(pull), 4),
                },
                "goal_s": 2.0,
                "python": platform.python_version(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
