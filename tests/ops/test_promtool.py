"""A real node's ``/metrics`` and the operator's rules file, checked by the real ``promtool``.

One node process serves some traffic (an ``echo`` agent answering requests, a message to an
unknown receiver that becomes a dead letter, an ``/api/v1/events`` WebSocket opened and closed),
then its metrics listener is scraped in the Prometheus text format, as a Prometheus server or
``curl | promtool check metrics`` reads it. ``promtool`` (Debian package ``prometheus``) lints the
scrape, checks docs/prometheus/caxton-rules.yml and runs its unit tests on synthetic series; the
cluster's rules and scrape config (docs/prometheus/prometheus-cluster.yml) are checked against a
real 3-node cluster's scrapes (tests/ops/clustered.py).
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.nodes import Cluster
from tests.ops import clustered
from tests.ops.singlenode import ECHOES, Scrapes
from tests.support import ROOT, tool

pytestmark = pytest.mark.slow

RULES_DIR = ROOT / "docs" / "prometheus"
RULES = RULES_DIR / "caxton-rules.yml"
RULE_TESTS = RULES_DIR / "caxton-rules.test.yml"
CLUSTER_CONFIG = RULES_DIR / "prometheus-cluster.yml"

#: Metric families docs/observability.md promises, and their Prometheus types.
PROMISED = {
    "caxton_messages_sent_total": "counter",
    "caxton_messages_received_total": "counter",
    "caxton_message_processing_duration_seconds": "histogram",
    "caxton_message_queue_size": "gauge",
    "caxton_message_errors_total": "counter",
    "caxton_dead_letters_total": "counter",
    "caxton_websocket_connections": "gauge",  # open /api/v1/events streams
    "caxton_http_requests_total": "counter",
    "caxton_build_info": "gauge",
    "caxton_storage_writable": "gauge",  # what /ready checks of the state store
}


def _value(text: str, name: str, **labels: str) -> float | None:
    """The sample ``name`` whose labels include ``labels``, or None if there is none."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return None


def _types(text: str) -> dict[str, str]:
    """``# TYPE`` lines: metric name as exposed -> type."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))


def _sample_names(text: str) -> set[str]:
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


@pytest.fixture(scope="module")
def promtool() -> str:
    return tool("promtool", "prometheus")


def _run(promtool: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=RULES_DIR,
    )


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"promtool exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


def test_scrape_is_the_text_format_promtool_reads(scrapes: Scrapes) -> None:
    # `promtool check metrics` parses the text format 0.0.4 only (not OpenMetrics).
    assert scrapes.content_type.startswith("text/plain; version=0.0.4"), scrapes.content_type


def test_promtool_check_metrics_finds_no_problem(scrapes: Scrapes, promtool: str) -> None:
    for text in (scrapes.stream_open, scrapes.final):
        result = _run(promtool, "check", "metrics", stdin=text)
        assert result.returncode == 0, _output(result)
        assert result.stdout.strip() == "", _output(result)
        assert result.stderr.strip() == "", _output(result)


def test_the_promised_families_are_exposed(scrapes: Scrapes) -> None:
    text = scrapes.final
    types = _types(text)
    exposed = {name: types.get(name) for name in PROMISED}
    assert exposed == PROMISED
    assert all(name.startswith("caxton_") for name in types)

    assert (_value(text, "caxton_messages_sent_total") or 0) >= ECHOES
    assert (_value(text, "caxton_messages_received_total") or 0) >= ECHOES
    duration = "caxton_message_processing_duration_seconds"
    assert (_value(text, f"{duration}_count") or 0) >= ECHOES
    assert _value(text, f"{duration}_bucket", le="+Inf") == _value(text, f"{duration}_count")
    assert _value(text, "caxton_message_queue_size") == 0
    assert _value(text, "caxton_dead_letters_total", reason="unknown_receiver") == 1
    assert _value(text, "caxton_message_errors_total", reason="unknown_receiver") == 1
    answered = _value(
        text, "caxton_http_requests_total", method="POST", route="/api/v1/messages", status="200"
    )
    assert answered == ECHOES
    accepted = _value(
        text, "caxton_http_requests_total", method="POST", route="/api/v1/messages", status="202"
    )
    assert accepted == 1
    assert _value(text, "caxton_build_info") == 1
    assert _value(text, "caxton_storage_writable") == 1
    assert re.search(r'^caxton_build_info\{.*version="[^"]+".*\} 1\.0$', text, re.MULTILINE)


def test_websocket_streams_are_counted(scrapes: Scrapes) -> None:
    assert _value(scrapes.stream_open, "caxton_websocket_connections") == 1
    assert _value(scrapes.final, "caxton_websocket_connections") == 0
    assert _value(scrapes.final, "caxton_websocket_connections_dropped_total") == 0


def test_rules_file_passes_promtool_check_rules(promtool: str) -> None:
    result = _run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, _output(result)
    text = RULES.read_text()
    rules = len(re.findall(r"^\s*- (?:alert|record): ", text, re.MULTILINE))
    assert f"SUCCESS: {rules} rules found" in result.stdout, _output(result)


def test_rules_unit_tests_pass(promtool: str) -> None:
    result = _run(promtool, "test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, _output(result)
    assert "SUCCESS" in result.stdout, _output(result)
    alerts = set(re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.MULTILINE))
    tested = set(re.findall(r"^\s*alertname: (\w+)", RULE_TESTS.read_text(), re.MULTILINE))
    assert alerts, "no alerts in the rules file"
    assert alerts == tested, "every alert needs a unit test (and only those)"


def _rule_metrics() -> set[str]:
    # Names of scraped series, not of recorded ones (``instance:caxton_messages_sent:rate5m``).
    return set(re.findall(r"(?<![\w:])caxton_\w+(?![\w:])", RULES.read_text()))


def test_rules_only_use_metrics_the_node_exposes(scrapes: Scrapes) -> None:
    used = {name for name in _rule_metrics() if not name.startswith("caxton_cluster_")}
    assert used, "the rules use no caxton_ metric"
    assert used - _sample_names(scrapes.final) == set()


def test_cluster_rules_only_use_metrics_a_clustered_node_exposes(cluster: Cluster) -> None:
    used = {name for name in _rule_metrics() if name.startswith("caxton_cluster_")}
    expected = {
        "caxton_cluster_members",
        "caxton_cluster_outbox_oldest_age_seconds",
        "caxton_cluster_forward_failed_requests_total",
        "caxton_cluster_forward_retried_total",
        "caxton_cluster_registry_conflicts_total",
    }
    assert expected <= used
    for node in cluster.nodes:
        assert used - _sample_names(clustered.scrape(node)) == set(), node.name


def test_promtool_check_metrics_finds_no_problem_on_a_clustered_node(
    cluster: Cluster, promtool: str
) -> None:
    for node in cluster.nodes:
        result = _run(promtool, "check", "metrics", stdin=clustered.scrape(node))
        assert result.returncode == 0, _output(result)
        assert (result.stdout + result.stderr).strip() == "", _output(result)


def test_cluster_scrape_config_passes_promtool_check_config(promtool: str) -> None:
    # It loads caxton-rules.yml (checked as part of the config).
    result = _run(promtool, "check", "config", CLUSTER_CONFIG.name)
    assert result.returncode == 0, _output(result)
    assert "SUCCESS: 1 rule files found" in result.stdout, _output(result)
    assert f"{RULES.name}" in result.stdout, _output(result)


def test_cluster_scrape_config_labels_each_of_three_nodes() -> None:
    config = yaml.safe_load(CLUSTER_CONFIG.read_text())
    assert config["rule_files"] == [RULES.name]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "caxton"  # what the rules select
    assert job.get("metrics_path", "/metrics") == "/metrics"
    groups = job["static_configs"]
    targets = [target for group in groups for target in group["targets"]]
    nodes = [group["labels"]["node"] for group in groups]
    assert len(groups) == len(targets) == len(set(nodes)) == 3
    # The metrics listener's default port, on the host names the deployment guide uses.
    assert targets == [f"{node}:9090" for node in nodes]


def test_every_cluster_alert_is_documented() -> None:
    docs = (ROOT / "docs" / "observability.md").read_text()
    alerts = re.findall(r"^\s*- alert: (CaxtonCluster\w+)", RULES.read_text(), re.MULTILINE)
    assert len(alerts) == 6
    for alert in alerts:
        assert f"`{alert}`" in docs, alert
