"""A real 2+1 partition of node processes (network namespace + iptables, as root; see
tests/cluster/netns.py): the isolated node's nats-server stays up, only its routes are cut."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import wait_until

from .netns import Netns, gid_prefix, why_not
from .nodes import Cluster, Views

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(why_not() is not None, reason=f"real partitions: {why_not()}"),
]

P = 0.2
#: What a loaded test machine may add to a bound counted in probe intervals (a late tick).
SLACK = 0.5
MEMBERSHIP_LOGGER = "caxton.cluster.membership"


@pytest.fixture
def ns() -> Iterator[Netns]:
    with Netns() as namespace:
        yield namespace


def _sequence(lines: list[str], name: str) -> list[str]:
    return [line for line in lines if f"member {name} is" in line]


def test_2_plus_1_partition_dead_both_ways_then_alive_after_the_heal(
    tmp_path: Path, ns: Netns
) -> None:
    with Cluster(tmp_path, 3, ns=ns, probe_interval=P) as cluster:
        cluster.start()
        cluster.all_alive(timeout=15)
        majority, isolated = [cluster[0], cluster[1]], cluster[2]
        names = {node.name for node in cluster.nodes}

        before = {
            node.name: len(_sequence(node.log_lines(MEMBERSHIP_LOGGER), isolated.name))
            for node in majority
        }
        rules = cluster.isolate(2)
        cut = time.time()

        def split(views: Views) -> bool:
            for observer, view in views.items():
                for member, state in view.items():
                    apart = (observer == isolated.name) != (member == isolated.name)
                    if state != ("dead" if apart else "alive"):
                        return False
            return True

        cluster.wait_views(split, 5 * P + 5, what="the two and the one see each other dead")
        for node in majority:
            assert node.members()[isolated.name]["since"] - cut <= 5 * P + SLACK
            changes = _sequence(node.log_lines(MEMBERSHIP_LOGGER), isolated.name)
            assert changes[before[node.name] :] == [
                f"member {isolated.name} is suspect (was alive)",
                f"member {isolated.name} is dead (was suspect)",
            ]
        seen_by_isolated = isolated.members()
        for node in majority:
            assert seen_by_isolated[node.name]["since"] - cut <= 5 * P + SLACK
        # The isolated node's own nats-server and client are fine: it is up, not crashed.
        assert isolated.cluster_status()["connected"] is True

        ns.heal(rules)
        views = cluster.all_alive(timeout=15)
        assert all(set(view) == names for view in views.values())
        for node in majority:
            assert _sequence(node.log_lines(MEMBERSHIP_LOGGER), isolated.name)[-1] == (
                f"member {isolated.name} is alive (was dead)"
            )


def test_the_namespace_goes_with_everything_in_it(tmp_path: Path) -> None:
    with Netns() as namespace:
        sleeper = subprocess.Popen([*namespace.exec_prefix, "sleep", "60"])
        # `ip netns exec` enters the namespace, then becomes `sleep` (same pid): wait for it
        wait_until(lambda: sleeper.pid in namespace.pids(), 5.0, what="sleep is in the namespace")
        assert sleeper.pid in namespace.pids()
        name = namespace.name
    assert sleeper.wait(timeout=5) == -9
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert name not in listed.stdout.split()
    assert not Path(f"/var/run/netns/{name}").exists()


def test_an_empty_namespace_left_by_a_killed_run_is_deleted_by_the_next() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait(timeout=5)  # a test process that has exited (killed, say) without cleaning up
    stale = f"caxton-test-{gone.pid}-000000"
    subprocess.run(["ip", "netns", "add", stale], check=True, timeout=10)
    try:
        with Netns():
            pass
        assert not Path(f"/var/run/netns/{stale}").exists()
    finally:
        if Path(f"/var/run/netns/{stale}").exists():
            subprocess.run(["ip", "netns", "del", stale], check=False, timeout=10)


_LISTENER = """
import socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("listening", flush=True)
conn, _ = server.accept()
for line in sys.stdin:  # one line per send
    conn.sendall(line.encode())
"""

_DIALER = """
import socket, sys
conn = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print("connected", flush=True)
for timeout in (1.0, 10.0):
    conn.settimeout(timeout)
    try:
        print("got " + conn.recv(100).decode().strip(), flush=True)
    except TimeoutError:
        print("nothing", flush=True)
"""


@pytest.mark.parametrize(
    "front_end", [name for name in ("iptables-nft", "iptables-legacy") if shutil.which(name)]
)
def test_isolate_drops_a_marked_peers_packets_both_ways_and_heal_lets_them_through(
    front_end: str,
) -> None:
    with Netns(iptables=[front_end]) as ns:
        assert ns.iptables == front_end
        _isolate_and_heal(ns)


def _isolate_and_heal(ns: Netns) -> None:
    # Both processes marked, as every node of a Cluster is: the peer's own packets must not
    # take the isolated side's mark off the connection (and so get through).
    ns.mark(3001)
    ns.mark(3002)
    listener = subprocess.Popen(
        [*ns.exec_prefix, *gid_prefix(3002), sys.executable, "-c", _LISTENER, "7950"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert listener.stdin is not None
    assert listener.stdout is not None
    try:  # the dialer only once the listener listens (else: connection refused, under load)
        assert listener.stdout.readline().strip() == "listening"
    except BaseException:
        listener.kill()
        listener.communicate(timeout=5)
        raise
    dialer = subprocess.Popen(
        [*ns.exec_prefix, *gid_prefix(3001), sys.executable, "-c", _DIALER, "7950"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert dialer.stdout is not None
        assert dialer.stdout.readline().strip() == "connected"
        rules = ns.isolate(gid=3001, port=7951, peers=[7950])
        listener.stdin.write("across the cut\n")
        listener.stdin.flush()
        assert dialer.stdout.readline().strip() == "nothing"
        ns.heal(rules)
        assert dialer.stdout.readline().strip() == "got across the cut"  # retransmitted
    finally:
        for process in (listener, dialer):
            process.kill()
            process.communicate(timeout=5)
