"""The cluster's metrics on a real node's ``/metrics``, as docs/observability.md lists them;
none of them on a single node."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.nodeproc import NodeProcess, free_port, write_config
from tests.support import ROOT, wait_until

pytestmark = pytest.mark.slow

#: The cluster families the docs promise, and their types (as exposed).
FAMILIES = {
    "caxton_cluster_members": "gauge",
    "caxton_cluster_heartbeats_sent": "counter",
    "caxton_cluster_heartbeats_received": "counter",
    "caxton_cluster_event_loop_stalls": "counter",
    "caxton_cluster_nats_server_restarts": "counter",
    "caxton_cluster_registry_entries": "gauge",
    "caxton_cluster_registry_conflicts": "counter",
    "caxton_cluster_registry_pulls": "counter",
    "caxton_cluster_registry_announcements": "counter",
    "caxton_cluster_outbox_depth": "gauge",
    "caxton_cluster_outbox_oldest_age_seconds": "gauge",
    "caxton_cluster_forward_requests": "counter",
    "caxton_cluster_forward_failed_requests": "counter",
    "caxton_cluster_forwarded_messages": "counter",
    "caxton_cluster_forward_acknowledged": "counter",
    "caxton_cluster_forward_early": "counter",
    "caxton_cluster_forward_early_acknowledged": "counter",
    "caxton_cluster_forward_retried": "counter",
    "caxton_cluster_received_messages": "counter",
    "caxton_cluster_received_duplicates": "counter",
}


def scrape(node: NodeProcess) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    status, body = node.get("metrics", "/metrics")
    assert status == 200, body
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name.startswith("caxton_cluster"):
            assert FAMILIES.get(family.name) == family.type, (family.name, family.type)
            found[family.name] = {
                tuple(sorted(sample.labels.items())): sample.value for sample in family.samples
            }
    return found


def test_documented_cluster_metrics_are_exposed(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        coordination=f'cluster_enabled = true\nbind_addr = "127.0.0.1:{port}"\n'
        f'seeds = ["127.0.0.1:{port}"]\nprobe_interval = "200ms"\n',
    )
    with NodeProcess(config).start(timeout=30) as node:

        def beating() -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
            found = scrape(node)
            sent = found.get("caxton_cluster_heartbeats_sent", {}).get((), 0)
            return found if sent >= 3 else None

        found = wait_until(beating, 10, what="three heartbeats counted")
    assert set(found) == set(FAMILIES)
    members = {
        dict(labels)["state"]: value for labels, value in found["caxton_cluster_members"].items()
    }
    assert members == {"alive": 1, "suspect": 0, "dead": 0, "left": 0}
    assert found["caxton_cluster_heartbeats_received"] == {(): 0}  # alone: only its own beats
    assert found["caxton_cluster_nats_server_restarts"] == {(): 0}
    assert found["caxton_cluster_event_loop_stalls"] == {(): 0}
    assert list(found["caxton_cluster_registry_entries"].values()) == [0]  # itself, no agents
    assert found["caxton_cluster_registry_conflicts"] == {(): 0}
    assert found["caxton_cluster_outbox_depth"] == {(): 0}  # nothing for other nodes yet
    assert found["caxton_cluster_forward_requests"] == {(): 0}

    documented = set(
        re.findall(
            r"`(caxton_cluster_\w+?)(?:_total)?`", (ROOT / "docs" / "observability.md").read_text()
        )
    )
    assert documented == set(FAMILIES)


def test_a_single_node_exposes_no_cluster_metric(tmp_path: Path) -> None:
    with NodeProcess(write_config(tmp_path)).start() as node:
        status, body = node.get("metrics", "/metrics")
    assert status == 200
    assert b"caxton_cluster" not in body
