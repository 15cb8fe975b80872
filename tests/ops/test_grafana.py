"""docs/grafana/caxton.json: an importable Grafana dashboard whose every query parses
(``promtool``) and reads metrics that real nodes export, single and clustered.

A real Prometheus server evaluating the same queries against a real cluster is in
tests/ops/test_prometheus.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.nodes import Cluster
from tests.ops import clustered, grafana
from tests.ops.singlenode import Scrapes
from tests.support import tool

pytestmark = pytest.mark.slow

#: The panels an operator looks for (titles as shown), and a metric each one must read.
EXPECTED = {
    "Messages/s": "caxton_messages_sent_total",
    "Message latency": "caxton_message_processing_duration_seconds_bucket",
    "Mailbox depth": "caxton_message_queue_size",
    "Dead letters/s by reason": "caxton_dead_letters_total",
    "Agents by state": "caxton_agents",
    "Cluster members by state": "caxton_cluster_members",
    "Outbox depth": "caxton_cluster_outbox_depth",
    "Outbox oldest age": "caxton_cluster_outbox_oldest_age_seconds",
    "Forwards/s": "caxton_cluster_forwarded_messages_total",
}
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return grafana.load()


def test_the_dashboard_is_importable_grafana_json(dashboard: dict[str, Any]) -> None:
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["title"] == "Caxton"
    assert dashboard["uid"]
    assert dashboard["id"] is None  # Grafana assigns the id on import
    (source,) = dashboard["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == (
        "DS_PROMETHEUS",
        "datasource",
        "prometheus",
    )
    panels = list(grafana.panels(dashboard))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"] == DATASOURCE, variable["name"]


def test_the_dashboard_has_no_outside_links(dashboard: dict[str, Any]) -> None:
    assert dashboard["links"] == []
    assert all(not panel.get("links") for panel in grafana.panels(dashboard))
    assert not re.search(r"https?://", grafana.DASHBOARD.read_text()), "a URL in the dashboard"


def test_the_expected_panels_are_there(dashboard: dict[str, Any]) -> None:
    by_title: dict[str, set[str]] = {}
    for title, expr in grafana.queries(dashboard):
        by_title.setdefault(title, set()).update(grafana.metric_names(expr))
    for title, metric in EXPECTED.items():
        assert metric in by_title.get(title, set()), (title, by_title.get(title))
    latency = [expr for title, expr in grafana.queries(dashboard) if title == "Message latency"]
    assert latency
    assert all(expr.startswith("histogram_quantile(") for expr in latency)


def test_every_query_parses_with_promtool(dashboard: dict[str, Any], tmp_path: Path) -> None:
    queries = grafana.queries(dashboard)
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": grafana.promql(expr)}
                    for i, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [tool("promtool", "prometheus"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout, result.stdout


def test_a_broken_query_would_be_caught(tmp_path: Path) -> None:
    # The check above is worth something: promtool refuses a query with a typo.
    path = tmp_path / "broken.yml"
    broken = "sum by (instance) (rate(caxton_messages_sent_total[5m])"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "a:b", "expr": broken}]}]})
    )
    result = subprocess.run(
        [tool("promtool", "prometheus"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0


def test_every_metric_is_exported_by_real_nodes(
    dashboard: dict[str, Any], scrapes: Scrapes, cluster: Cluster
) -> None:
    used: set[str] = set()
    for _, expr in grafana.queries(dashboard):
        used |= grafana.metric_names(expr)
    assert set(EXPECTED.values()) <= used
    single = clustered.metric_names(scrapes.final)
    for node in cluster.nodes:
        names = clustered.metric_names(clustered.scrape(node))
        # A clustered node exports everything the dashboard reads...
        assert used - names == set(), node.name
    # ...and a single node everything but the cluster's metrics.
    assert {name for name in used if not name.startswith("caxton_cluster_")} - single == set()
