"""A real 3-node cluster (`caxton serve` processes with their nats-server children) that has
carried some traffic, for the tests that read what a clustered node exports.

Traffic: ``echo`` deployed on node 0 (through node 1), `REQUESTS` requests to it sent through
node 2 and answered (each one forwarded to node 0 and its reply forwarded back), and one
message to an unknown receiver (a dead letter on node 2).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.nodes import Cluster, ClusterNode
from tests.support import example, wait_until

__all__ = ["REQUESTS", "metric_names", "running_cluster", "scrape", "value"]

#: Requests sent to ``echo`` through the last node.
REQUESTS = 5


def scrape(node: ClusterNode) -> str:
    """The node's ``/metrics`` in the Prometheus text format."""
    status, body = node.get("metrics", "/metrics")
    assert status == 200, body
    return body.decode()


def value(text: str, name: str, **labels: str) -> float | None:
    """The sample ``name`` whose labels include ``labels``, or None if there is none."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return None


def metric_names(text: str) -> set[str]:
    """The names of the samples in a scrape (``_bucket``, ``_total``... as exposed)."""
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def _traffic(cluster: Cluster) -> None:
    owner, via, entry = cluster.nodes
    body = {"name": "echo", "wasm": base64.b64encode(example("echo")).decode(), "node": owner.name}
    status, answer = via.call("POST", "/api/v1/agents", body)
    assert status == 201, answer

    def listed_everywhere() -> bool:
        for node in cluster.nodes:
            status, page = node.call("GET", "/api/v1/agents")
            hosts = {agent["name"]: agent["node"] for agent in page["agents"]}
            if status != 200 or hosts.get("echo") != owner.name:
                return False
        return True

    wait_until(listed_everywhere, 15, retry_on=(OSError,), what="every node lists echo")
    for n in range(REQUESTS):
        request = {"receiver": "echo", "sender": "ops", "performative": "request", "content": n}
        status, reply = entry.call("POST", "/api/v1/messages?wait=5s", request)
        assert status == 200, reply
        assert (reply["sender"], reply["content"]) == ("echo", n), reply
    ghost = {"receiver": "ghost", "sender": "ops", "performative": "inform"}
    status, answer = entry.call("POST", "/api/v1/messages", ghost)
    assert status == 202, answer

    def counted() -> bool:
        forwarded = value(scrape(entry), "caxton_cluster_forward_acknowledged_total") or 0
        dead = value(scrape(entry), "caxton_dead_letters_total", reason="unknown_receiver")
        return forwarded >= REQUESTS and dead == 1

    wait_until(counted, 10, what="the forwards and the dead letter counted on the entry node")


@contextmanager
def running_cluster(directory: Path) -> Iterator[Cluster]:
    """Three nodes that see each other alive and have carried the traffic above; stopped
    (killed) on exit."""
    with Cluster(directory, 3, probe_interval=0.2, gossip_interval=0.1) as cluster:
        cluster.start()
        cluster.all_alive(timeout=15)
        _traffic(cluster)
        yield cluster
