"""Across a real partition of three `caxton serve` processes (network namespace + iptables, as
root; tests/cluster/netns.py), node a is cut off from b and c:

* a `?wait` POST on a to an agent on b answers 504 (docs/api.md: the message stays accepted),
  and the message is delivered, and answered, after the heal;
* messages a accepts for an agent it still places on b, which meanwhile moved to c (removed
  from b, deployed on c, while a could not hear it), are sent to b after the heal, which sends
  them on to c: each is handled once, none is dead-lettered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import wait_until

from .netns import Netns, why_not
from .nodes import Cluster, ClusterNode, Views
from .test_e2e_partition import send
from .test_e2e_processes import GOSSIP, P, deploy_body, everyone_lists, handled, listed

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(why_not() is not None, reason=f"real partitions: {why_not()}"),
]

#: Messages a accepts during the split for the agent that moves.
COUNT = 40


@pytest.fixture
def ns() -> Iterator[Netns]:
    with Netns() as namespace:
        yield namespace


def dead_letters_for(node: ClusterNode, receiver: str) -> list[dict[str, object]]:
    status, body = node.call("GET", "/api/v1/dead-letters?limit=1000")
    assert status == 200, body
    assert body["missing_nodes"] == [], body
    return [d for d in body["dead_letters"] if d["receiver"] == receiver]


def test_a_wait_across_a_split_is_504_and_a_moved_agent_gets_its_messages_through_b(
    tmp_path: Path, ns: Netns
) -> None:
    with Cluster(tmp_path, 3, ns=ns, probe_interval=P, gossip_interval=GOSSIP) as cluster:
        cluster.start()
        cluster.all_alive(timeout=15)
        a, b, c = cluster.nodes
        for name in ("held", "moving"):
            status, body = a.call("POST", "/api/v1/agents", deploy_body(name, node=b.name))
            assert status == 201, body
        everyone_lists(cluster, {"held": b.name, "moving": b.name})

        rules = cluster.isolate(0)

        def split(views: Views) -> bool:
            return all(
                state == ("dead" if (observer == a.name) != (member == a.name) else "alive")
                for observer, view in views.items()
                for member, state in view.items()
            )

        cluster.wait_views(split, 5 * P + 5, what="a and the two see each other dead")

        # A ?wait POST to an agent a cannot reach: 504, the message stays accepted.
        wait = {"receiver": "held", "performative": "request", "sender": "waiter"}
        status, body = a.call("POST", "/api/v1/messages?wait=1s", {**wait, "content": "hi"})
        assert status == 504, body
        error = body["error"]
        assert error["code"] == "UNAVAILABLE", error
        conversation = error["details"]["conversation_id"]

        # "moving" moves from b to c while a cannot hear it; a still places it on b.
        send(a, "moving", "from-a", COUNT)
        status, body = b.call("DELETE", "/api/v1/agents/moving")
        assert status == 204, body
        wait_until(lambda: "moving" not in listed(c), 10, what="c hears moving was removed")
        status, body = c.call("POST", "/api/v1/agents", deploy_body("moving"))
        assert (status, body.get("node")) == (201, c.name), body
        wait_until(
            lambda: all(listed(node).get("moving") == c.name for node in (b, c)),
            10,
            what="b and c place moving on c",
        )
        assert listed(a)["moving"] == b.name  # a did not hear of the move
        assert handled(c, "moving") == 0

        ns.heal(rules)
        cluster.all_alive(timeout=15)
        wait_until(
            lambda: handled(c, "moving") >= COUNT and handled(b, "held") >= 1,
            30,
            what=lambda: (
                f"delivered after the heal: moving {handled(c, 'moving')} of {COUNT},"
                f" held {handled(b, 'held')}"
            ),
        )
        everyone_lists(cluster, {"held": b.name, "moving": c.name})

        def answered() -> bool:
            status, body = a.call("GET", f"/api/v1/conversations/{conversation}")
            assert status == 200, body
            return [m["sender"] for m in body["messages"]] == ["waiter", "held"]

        wait_until(answered, 10, what="the reply to the 504'd request is in its conversation")
        assert (handled(c, "moving"), handled(b, "held")) == (COUNT, 1)
        for node in cluster.nodes:
            assert dead_letters_for(node, "moving") == [], node.name
