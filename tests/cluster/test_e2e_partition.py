"""A real 2+1 partition of three `caxton serve` processes (network namespace + iptables, as
root; tests/cluster/netns.py): messages accepted on both sides for agents on the other side
are all delivered after the heal, a ping/pong game cut in the middle goes on, and a name
deployed on both sides is settled and reported."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_until

from .netns import Netns, why_not
from .nodes import Cluster, ClusterNode, Views
from .test_e2e_processes import GOSSIP, P, deploy_body, everyone_lists, handled

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(why_not() is not None, reason=f"real partitions: {why_not()}"),
]

#: Messages each sending node accepts during the split for an agent on the other side.
PER_NODE = 150
#: The exchanges of a ping/pong game between the two sides.
ROUNDS = 1000


@pytest.fixture
def ns() -> Iterator[Netns]:
    with Netns() as namespace:
        yield namespace


def send(node: ClusterNode, receiver: str, sender: str, count: int) -> None:
    message = {"receiver": receiver, "performative": "request", "sender": sender}
    batch = [{**message, "content": {"i": i}} for i in range(count)]
    status, body = node.call("POST", "/api/v1/messages", batch)
    assert status == 202, body
    assert len(body["accepted"]) == count
    assert all("message_id" in entry for entry in body["accepted"]), body


def conflicts(node: ClusterNode) -> list[dict[str, Any]]:
    status, body = node.call("GET", "/api/v1/cluster/conflicts")
    assert status == 200, body
    found: list[dict[str, Any]] = body["conflicts"]
    return found


def test_messages_across_a_2_plus_1_split_are_all_delivered_after_the_heal_and_a_twin_is_settled(
    tmp_path: Path, ns: Netns
) -> None:
    with Cluster(tmp_path, 3, ns=ns, probe_interval=P, gossip_interval=GOSSIP) as cluster:
        cluster.start()
        cluster.all_alive(timeout=15)
        a, b, c = cluster.nodes  # a and b: the majority; c: cut off
        for name, module, host in (
            ("on-a", "echo", a),
            ("on-c", "echo", c),
            ("ping", "ping", a),
            ("pong", "pong", c),
        ):
            status, body = a.call(
                "POST", "/api/v1/agents", deploy_body(name, module, node=host.name)
            )
            assert status == 201, body
        everyone_lists(cluster, {"on-a": a.name, "on-c": c.name, "ping": a.name, "pong": c.name})
        # A game between agents on both sides, cut in the middle.
        start = {"op": "start", "peer": "pong", "n": ROUNDS}
        game = {"receiver": "ping", "performative": "request", "content": start}
        status, body = a.call("POST", "/api/v1/messages", {**game, "sender": "referee"})
        assert status == 202, body

        rules = cluster.isolate(2)

        def split(views: Views) -> bool:
            return all(
                state == ("dead" if (observer == c.name) != (member == c.name) else "alive")
                for observer, view in views.items()
                for member, state in view.items()
            )

        cluster.wait_views(split, 5 * P + 5, what="the two and the one see each other dead")
        # Both sides accept messages for the other side's agent, and keep them.
        send(a, "on-c", "from-a", PER_NODE)
        send(b, "on-c", "from-b", PER_NODE)
        send(c, "on-a", "from-c", 2 * PER_NODE)
        # The same name deployed on each side: c's copy first, so c's wins.
        status, body = c.call("POST", "/api/v1/agents", deploy_body("twin"))
        assert (status, body.get("node")) == (201, c.name), body
        status, body = a.call("POST", "/api/v1/agents", deploy_body("twin"))
        assert (status, body.get("node")) == (201, a.name), body
        assert handled(c, "on-c") == 0
        assert handled(a, "on-a") == 0
        assert handled(c, "pong") < ROUNDS  # the game stalled at the cut

        ns.heal(rules)
        cluster.all_alive(timeout=15)
        want = 2 * PER_NODE
        wait_until(
            lambda: handled(c, "on-c") >= want and handled(a, "on-a") >= want,
            30,
            what=lambda: f"all delivered: on-c {handled(c, 'on-c')}, on-a {handled(a, 'on-a')}",
        )
        wait_until(
            lambda: handled(a, "ping") == ROUNDS + 1,
            30,
            what=lambda: f"the game went on after the heal: ping {handled(a, 'ping')}",
        )
        assert handled(c, "pong") == ROUNDS
        # The twin: every node routes it to the first deploy (c), a's copy is stopped, kept.
        everyone_lists(cluster, {"on-a": a.name, "on-c": c.name})

        def settled() -> bool:
            return all(
                [(x["name"], x["winner"], x["loser"]) for x in conflicts(node)]
                == [("twin", c.name, a.name)]
                for node in cluster.nodes
            )

        wait_until(
            settled,
            10,
            what=lambda: json.dumps({n.name: conflicts(n) for n in cluster.nodes}),
        )
        status, body = a.call("GET", f"/api/v1/agents/twin?node={a.name}")
        assert (status, body["state"]) == (200, "stopped"), body
        status, body = b.call("GET", "/api/v1/agents/twin")
        assert (status, body["node"], body["state"]) == (200, c.name, "running"), body
        line = (
            f"registry conflict: agent twin is on {c.name} and {a.name}; {c.name} keeps it"
            f" (deployed first), the copy on {a.name} is stopped and kept stored"
        )
        for node in cluster.nodes:
            assert line in node.log_lines("caxton.cluster.registry"), node.name
        # Exactly once: a message acknowledged late (its ack lost in the split) was dropped
        # by the receiver as a duplicate, not handled twice.
        assert (handled(c, "on-c"), handled(a, "on-a")) == (want, want)
        assert (handled(a, "ping"), handled(c, "pong")) == (ROUNDS + 1, ROUNDS)
