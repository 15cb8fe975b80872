"""Failure detection between real node processes: ``kill -9`` to ``dead``, a partition to
``dead`` both ways, and a heal to ``alive``; prints JSON.

    python bench/bench_failover.py [--runs 5] [--probe-interval 1] [--nodes 3]

Starts `--nodes` node processes (each with its nats-server child) from one seed list, on
127.0.0.1: inside a private network namespace when run as root (then the partition is
measured too, made with iptables as tests/cluster/netns.py does), else on the machine's
loopback (the partition is skipped, with the reason). Every process it started is stopped
before it exits, and the namespace is deleted.

* ``kill_to_dead_s``: from ``kill -9`` of the last node to the moment the last survivor marked
  it ``dead`` (the survivors' own ``since`` stamps); the node is restarted between runs.
* ``restart_to_alive_s``: from starting it again (same data directory) to every node seeing
  every node ``alive`` (polled every 50 ms; includes the process start).
* ``sigterm_to_left_s``: from SIGTERM of the last node to the last survivor marking it ``left``.
* ``partition_to_dead_s``: from cutting the last node's routes to the moment the last of the
  four views concerned (each side sees the other) turned ``dead``.
* ``heal_to_alive_s``: from deleting the rules to every node seeing every node ``alive``
  (polled every 50 ms).

Goal (the seed's ``probe_interval = "1s"``): kill -9 to dead on every survivor <= 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from caxton.cluster.binary import find_binary

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's tests/ helpers

from tests.cluster.netns import Netns, why_not
from tests.cluster.nodes import Cluster, Views

GOAL_KILL_TO_DEAD = 5.0  # seconds, at probe_interval = 1 s


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "runs": [round(value, 3) for value in values],
    }


def stop_runs(
    cluster: Cluster, runs: int, timeout: float, sig: int
) -> tuple[list[float], list[float]]:
    """Per run: seconds from `sig` to the last node to `dead` (SIGKILL) or `left` (SIGTERM)
    on the last survivor, and from restarting the node to every node seeing all alive."""
    detect: list[float] = []
    rejoin: list[float] = []
    victim = cluster.nodes[-1]
    survivors = cluster.nodes[:-1]
    state = "dead" if sig == signal.SIGKILL else "left"
    for _ in range(runs):
        cluster.all_alive(timeout)
        time.sleep(random.uniform(1, 2) * cluster.probe_interval)  # at a random phase
        sent = cluster.kill(victim.index, sig)
        cluster.wait_views(
            lambda views: all(view[victim.name] == state for view in views.values()),
            timeout,
            what=f"{victim.name} {state} on every survivor",
        )
        detect.append(max(node.members()[victim.name]["since"] for node in survivors) - sent)
        started = time.monotonic()
        cluster.start(victim.index)
        cluster.all_alive(timeout)
        rejoin.append(time.monotonic() - started)
    return detect, rejoin


def partition_runs(cluster: Cluster, runs: int, timeout: float) -> tuple[list[float], list[float]]:
    """Seconds from the cut to dead on both sides, and from the heal to all alive, per run."""
    detect: list[float] = []
    heal: list[float] = []
    isolated = cluster.nodes[-1]
    others = cluster.nodes[:-1]
    assert cluster.ns is not None
    for _ in range(runs):
        cluster.all_alive(timeout)
        time.sleep(random.uniform(1, 2) * cluster.probe_interval)
        rules = cluster.isolate(isolated.index)
        cut = time.time()
        try:

            def split(views: Views) -> bool:
                seen_by_isolated = views[isolated.name]
                return all(views[n.name][isolated.name] == "dead" for n in others) and all(
                    seen_by_isolated[n.name] == "dead" for n in others
                )

            cluster.wait_views(split, timeout, what="both sides of the partition see dead")
            stamps = [node.members()[isolated.name]["since"] for node in others]
            stamps += [isolated.members()[node.name]["since"] for node in others]
            detect.append(max(stamps) - cut)
        finally:
            cluster.ns.heal(rules)
        healed = time.monotonic()
        cluster.all_alive(timeout)
        heal.append(time.monotonic() - healed)
    return detect, heal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--probe-interval", type=float, default=1.0)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    probe = args.probe_interval
    timeout = 10 * probe + 20  # every wait is bounded
    reason = why_not()
    result: dict[str, Any] = {
        "benchmark": "failover",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "nats_server": subprocess.run(
                [str(find_binary(None)), "--version"], capture_output=True, text=True, timeout=10
            ).stdout.strip(),
        },
        "nodes": args.nodes,
        "probe_interval_s": probe,
        "network": "private network namespace" if reason is None else "loopback",
    }
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        ns = None if reason is not None else stack.enter_context(Netns("caxton-bench"))
        cluster = stack.enter_context(Cluster(tmp, args.nodes, ns=ns, probe_interval=probe))
        cluster.start()
        kills, restarts = stop_runs(cluster, args.runs, timeout, signal.SIGKILL)
        result["kill_to_dead_s"] = _summary(kills)
        result["goal_kill_to_dead_s"] = GOAL_KILL_TO_DEAD * probe
        result["goal_met"] = statistics.median(kills) <= GOAL_KILL_TO_DEAD * probe
        result["restart_to_alive_s"] = _summary(restarts)
        leaves, _ = stop_runs(cluster, args.runs, timeout, signal.SIGTERM)
        result["sigterm_to_left_s"] = _summary(leaves)
        if ns is None:
            result["partition"] = f"skipped: {reason}"
        else:
            detect, heal = partition_runs(cluster, args.runs, timeout)
            result["partition_to_dead_s"] = _summary(detect)
            result["heal_to_alive_s"] = _summary(heal)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
