"""Membership between real node processes on 127.0.0.1 (each with its own nats-server child).

Probe interval P = 0.2 s. Each node's view is its admin ``/status`` ``cluster.members``.
docs/cluster.md states the bounds checked here: a node killed with ``kill -9`` is ``dead`` on
every survivor at most 5 P after the kill; a node stopped with SIGTERM is ``left`` at once.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from .nodes import Cluster, Views

pytestmark = pytest.mark.slow

P = 0.2
#: What a loaded test machine may add to a bound counted in probe intervals (a late tick).
SLACK = 0.5
MEMBERSHIP_LOGGER = "caxton.cluster.membership"


def stop_and_see_left(cluster: Cluster, index: int) -> None:
    """SIGTERM node `index`: it exits 0 and every running node sees it ``left`` at once."""
    leaver = cluster[index]
    stopped = cluster.kill(index, signal.SIGTERM)
    assert leaver.proc is not None
    assert leaver.proc.returncode == 0

    def left(views: Views) -> bool:
        return all(view[leaver.name] == "left" for view in views.values())

    cluster.wait_views(left, 5, what=f"every other node sees {leaver.name} left")
    for node in cluster.running():
        # Announced, not detected: left before a silence of 3 P could make it suspect.
        assert node.members()[leaver.name]["since"] - stopped < 3 * P
        changes = [line for line in node.log_lines(MEMBERSHIP_LOGGER) if leaver.name in line]
        assert changes[-1] == f"member {leaver.name} is left (was alive)"


@pytest.mark.parametrize("size", [2, 3, 5])
def test_nodes_from_one_seed_list_see_each_other_alive_and_each_left(
    tmp_path: Path, size: int
) -> None:
    with Cluster(tmp_path, size, probe_interval=P) as cluster:
        cluster.start()
        views = cluster.all_alive(timeout=15)
        assert len(views) == size
        assert all(len(view) == size for view in views.values())
        for index in reversed(range(1, size)):  # stopped one by one: the rest see each left
            stop_and_see_left(cluster, index)


def test_started_in_reverse_order_they_still_form_one_cluster(tmp_path: Path) -> None:
    with Cluster(tmp_path, 3, probe_interval=P) as cluster:
        for index in (2, 1, 0):  # each ready on its own, before its seeds are up
            cluster.start(index)
        cluster.all_alive(timeout=15)


def test_a_seed_down_at_start_is_joined_when_it_comes_up(tmp_path: Path) -> None:
    # Node 0 lists no seed: only the others' retries (nats-server's backoff) can reach it.
    def seeds(index: int) -> list[int]:
        return [] if index == 0 else [0, 1, 2]

    with Cluster(tmp_path, 3, probe_interval=P, seeds=seeds) as cluster:
        started = time.monotonic()
        cluster.start(1, 2)
        views = cluster.all_alive(timeout=15)  # the others carry on without it
        assert len(views) == 2
        time.sleep(max(0.0, started + 10.0 - time.monotonic()))
        cluster.start(0)
        cluster.all_alive(timeout=15)


def test_kill_9_is_dead_everywhere_restart_rejoins_and_sigterm_is_left_at_once(
    tmp_path: Path,
) -> None:
    with Cluster(tmp_path, 3, probe_interval=P) as cluster:
        cluster.start()
        cluster.all_alive(timeout=15)
        victim = cluster[2]
        first = victim.members()[victim.name]["incarnation"]

        killed = cluster.kill(2)
        survivors = [cluster[0], cluster[1]]
        cluster.wait_views(
            lambda views: all(view[victim.name] == "dead" for view in views.values()),
            5 * P + 5,
            what="every survivor sees the killed node dead",
        )
        for node in survivors:
            dead_at = node.members()[victim.name]["since"]
            assert dead_at - killed <= 5 * P + SLACK, (node.name, dead_at - killed)

        cluster.start(2)  # the same data directory: the same name, a new incarnation
        cluster.all_alive(timeout=15)
        for node in cluster.nodes:
            assert node.members()[victim.name]["incarnation"] > first

        stop_and_see_left(cluster, 1)
