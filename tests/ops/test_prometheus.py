"""Debian's ``prometheus`` server scrapes a real 3-node cluster with the shipped scrape config.

docs/prometheus/prometheus-cluster.yml is read as shipped; only what a test must change is
changed: the targets point at the nodes' metrics listeners on 127.0.0.1 (in order, each keeping
its ``node`` label), the intervals are 1 s, and ``rule_files`` names the shipped rules file by
its absolute path. The server keeps its storage under ``tmp_path`` and listens on a free
loopback port; everything is read back through its HTTP API, as Grafana or an operator would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.nodes import Cluster
from tests.nodeproc import free_port
from tests.ops import grafana
from tests.ops.clustered import REQUESTS
from tests.support import ROOT, wait_until

pytestmark = pytest.mark.slow

SHIPPED = ROOT / "docs" / "prometheus" / "prometheus-cluster.yml"
RULES = ROOT / "docs" / "prometheus" / "caxton-rules.yml"
#: Bounds every wait on the server (it scrapes every second).
WAIT = 30.0


def _config(cluster: Cluster) -> dict[str, Any]:
    """The shipped config, aimed at the cluster's metrics listeners."""
    config: dict[str, Any] = yaml.safe_load(SHIPPED.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(SHIPPED.parent / name) for name in config["rule_files"]]
    (job,) = config["scrape_configs"]
    job.update(scrape_interval="1s", scrape_timeout="1s")
    groups = job["static_configs"]
    assert len(groups) == len(cluster.nodes)
    for group, node in zip(groups, cluster.nodes, strict=True):
        address = node.url("metrics", "").split("://", 1)[1]
        group["targets"] = [address]
    return config


class Prometheus:
    """A ``prometheus`` server process this test started."""

    def __init__(self, binary: str, config: Path, directory: Path) -> None:
        self.port = free_port()
        self.log = directory / "prometheus.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=directory,
            )

    def get(self, path: str, **query: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant query's vector: {sorted labels: value}."""
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return {
            tuple(sorted(item["metric"].items())): float(item["value"][1])
            for item in data["result"]
        }

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}: {self.output()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # by pid: the one process this test started
        self.proc.wait(timeout=15)


@pytest.fixture
def prometheus(cluster: Cluster, tmp_path: Path) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(binary).is_file():
        pytest.skip("the prometheus server binary is missing (Debian package prometheus)")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(_config(cluster), sort_keys=False))
    server = Prometheus(binary, config, tmp_path)
    try:
        wait_until(server.ready, WAIT, what="prometheus answered /-/ready")
        yield server
    finally:
        server.stop()


def test_prometheus_scrapes_every_node_of_the_cluster(
    prometheus: Prometheus, cluster: Cluster
) -> None:
    labels = [
        group["labels"]["node"] for group in _config(cluster)["scrape_configs"][0]["static_configs"]
    ]

    def all_up() -> list[dict[str, Any]] | None:
        active = prometheus.get("/api/v1/targets", state="active")["activeTargets"]
        healthy = [t for t in active if t["health"] == "up"]
        return active if len(healthy) == len(cluster.nodes) == len(active) else None

    targets = wait_until(all_up, WAIT, what=lambda: f"every target up: {prometheus.output()}")
    assert sorted(t["labels"]["node"] for t in targets) == sorted(labels)
    assert {t["labels"]["job"] for t in targets} == {"caxton"}
    assert prometheus.query('up{job="caxton"}') == {
        (
            ("__name__", "up"),
            ("instance", t["labels"]["instance"]),
            ("job", "caxton"),
            ("node", t["labels"]["node"]),
        ): 1
        for t in targets
    }

    def members_arrived() -> dict[str, dict[str, float]] | None:
        """{state: {node label: count}} once every node reports all three alive, none else
        (polled: a member may be suspect for a moment on a loaded machine)."""
        found: dict[str, dict[str, float]] = {}
        for key, count in prometheus.query("caxton_cluster_members").items():
            labels = dict(key)
            found.setdefault(labels["state"], {})[labels["node"]] = count
        alive = found.get("alive", {})
        if len(alive) != len(cluster.nodes) or set(alive.values()) != {len(cluster.nodes)}:
            return None
        others = [found.get(state, {}) for state in ("suspect", "dead", "left")]
        if any(len(seen) != len(cluster.nodes) or set(seen.values()) != {0} for seen in others):
            return None
        return found

    states = wait_until(
        members_arrived, WAIT, what="every node's caxton_cluster_members: 3 alive, 0 else"
    )
    # Every node, labelled with its node, sees the three members alive.
    assert sorted(states["alive"]) == sorted(labels)

    # The node series and the message path's series arrive too, from every node.
    series = prometheus.get("/api/v1/label/__name__/values")
    assert {name for name in series if name.startswith("caxton_cluster_")} >= {
        "caxton_cluster_members",
        "caxton_cluster_outbox_depth",
        "caxton_cluster_forward_acknowledged_total",
        "caxton_cluster_registry_entries",
    }
    assert len(prometheus.query("caxton_build_info")) == len(cluster.nodes)
    acknowledged = prometheus.query("sum(caxton_cluster_forward_acknowledged_total)")
    (total,) = acknowledged.values()
    assert total >= REQUESTS
    # A node's own `node` label (the registry's hosting node) does not overwrite the target's:
    # Prometheus keeps it as `exported_node` (docs/observability.md says so).
    entries = prometheus.query("caxton_cluster_registry_entries")
    assert entries
    assert all("exported_node" in dict(key) for key in entries), entries


def test_prometheus_loads_the_shipped_rules(prometheus: Prometheus) -> None:
    def loaded() -> list[dict[str, Any]] | None:
        groups: list[dict[str, Any]] = prometheus.get("/api/v1/rules")["groups"]
        return groups or None

    groups = wait_until(loaded, WAIT, what="the rule groups loaded")
    names = {group["name"] for group in groups}
    assert names == {"caxton-recording", "caxton-alerts", "caxton-cluster"}
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert "CaxtonClusterMemberDead" in rules

    def evaluated() -> bool:
        now = prometheus.get("/api/v1/rules")["groups"]
        return all(rule.get("health") == "ok" for group in now for rule in group["rules"])

    wait_until(evaluated, WAIT, what="every rule evaluated without error")


def test_every_dashboard_query_answers_from_the_cluster(
    prometheus: Prometheus, cluster: Cluster
) -> None:
    """The Grafana dashboard's queries, as Grafana sends them, return series from the cluster."""
    queries = grafana.queries(grafana.load())
    # Every query, variables substituted, until each returns a series (rates need 2 scrapes).
    empty: list[grafana.Query] = list(queries)

    def all_answer() -> bool:
        for query in list(empty):
            _, expr = query
            if prometheus.query(grafana.promql(expr, rate_interval="1m")):
                empty.remove(query)
        return not empty

    wait_until(all_answer, WAIT, what=lambda: f"every dashboard query returns series: {empty}")
