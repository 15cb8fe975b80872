"""The snapshot bridge: plain records from statistics() become Prometheus families at scrape."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample as PromSample

from caxton.observability import HistogramSnapshot, Metrics, Sample, render_metrics


@dataclass(frozen=True)
class MailboxStatistics:
    """Stands in for what a core component's statistics() returns."""

    agent: str
    delivered: int
    queued: int
    latency_bounds: tuple[float, ...]
    latency_counts: tuple[int, ...]
    latency_sum: float
    latency_count: int


class FakeMailboxes:
    """A core-side producer: plain tuples, no import from caxton.observability."""

    def __init__(self) -> None:
        self.stats = [
            MailboxStatistics("echo", 10, 2, (0.01, 0.1, 1.0), (3, 4, 2), 1.5, 10),
            MailboxStatistics("pong", 1, 0, (0.01, 0.1, 1.0), (0, 0, 0), 3.0, 1),
        ]

    def samples(self) -> Iterable[Sequence[Any]]:
        for s in self.stats:
            labels = {"agent": s.agent}
            yield ("messages_delivered", "counter", labels, s.delivered, "Messages delivered.")
            yield ("mailbox_depth", "gauge", labels, s.queued)
            histogram = (s.latency_bounds, s.latency_counts, s.latency_sum, s.latency_count)
            yield ("handle_seconds", "histogram", labels, histogram)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create(CollectorRegistry(), prefix="cx", process_metrics=False)


def families(metrics: Metrics) -> dict[str, tuple[str, str, list[PromSample]]]:
    body, _ = render_metrics(metrics.registry)
    return {
        f.name: (f.type, f.documentation, list(f.samples))
        for f in text_string_to_metric_families(body.decode())
    }


def values(samples: list[PromSample], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in samples if s.name == name}


def test_counters_gauges_and_histograms_are_exposed(metrics: Metrics) -> None:
    mailboxes = FakeMailboxes()
    metrics.register_snapshot_source("mailboxes", mailboxes.samples)

    found = families(metrics)

    kind, doc, samples = found["cx_messages_delivered"]
    assert (kind, doc) == ("counter", "Messages delivered.")
    assert values(samples, "cx_messages_delivered_total") == {
        (("agent", "echo"),): 10,
        (("agent", "pong"),): 1,
    }
    kind, _, samples = found["cx_mailbox_depth"]
    assert kind == "gauge"
    assert values(samples, "cx_mailbox_depth") == {(("agent", "echo"),): 2, (("agent", "pong"),): 0}
    kind, _, samples = found["cx_handle_seconds"]
    assert kind == "histogram"
    echo = [s for s in samples if s.labels.get("agent") == "echo"]
    buckets = [(s.labels["le"], s.value) for s in echo if s.name == "cx_handle_seconds_bucket"]
    assert buckets == [("0.01", 3), ("0.1", 7), ("1.0", 9), ("+Inf", 10)]
    assert values(echo, "cx_handle_seconds_count") == {(("agent", "echo"),): 10}
    assert values(echo, "cx_handle_seconds_sum") == {(("agent", "echo"),): 1.5}


def test_values_are_read_at_scrape_time(metrics: Metrics) -> None:
    mailboxes = FakeMailboxes()
    metrics.register_snapshot_source("mailboxes", mailboxes.samples)
    families(metrics)

    mailboxes.stats = mailboxes.stats[:1]
    _, _, samples = families(metrics)["cx_messages_delivered"]

    assert values(samples, "cx_messages_delivered_total") == {(("agent", "echo"),): 10}


def test_named_tuples_and_total_suffix(metrics: Metrics) -> None:
    metrics.register_snapshot_source(
        "named",
        lambda: [
            Sample("restarts_total", "counter", {}, 3),
            Sample("size", "histogram", {}, HistogramSnapshot([1.0], [1], 0.5, 2)),
        ],
    )

    found = families(metrics)

    assert values(found["cx_restarts"][2], "cx_restarts_total") == {(): 3}
    assert values(found["cx_size"][2], "cx_size_bucket") == {
        (("le", "1.0"),): 1,
        (("le", "+Inf"),): 2,
    }


def test_source_up_gauge_and_a_failing_source_does_not_break_the_scrape(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> list[Sample]:
        raise RuntimeError("statistics() failed")

    metrics.register_snapshot_source("broken", broken)
    metrics.register_snapshot_source("fine", lambda: [("alive", "gauge", {}, 1)])

    with caplog.at_level(logging.WARNING, logger="caxton.observability"):
        found = families(metrics)

    assert values(found["cx_snapshot_source_up"][2], "cx_snapshot_source_up") == {
        (("source", "broken"),): 0,
        (("source", "fine"),): 1,
    }
    assert "cx_alive" in found
    assert "metrics snapshot source failed" in caplog.text
    assert "cx_http_requests" in found  # the rest of the registry is still there


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(("bad-name", "gauge", {}, 1), id="bad-name"),
        pytest.param(("x", "summary", {}, 1), id="unknown-kind"),
        pytest.param(("x", "gauge", {"__reserved": "v"}, 1), id="reserved-label"),
        pytest.param(("x", "gauge", ["not", "a", "mapping"], 1), id="labels-not-mapping"),
        pytest.param(("x", "gauge", {}, "many"), id="value-not-a-number"),
        pytest.param(("x", "histogram", {}, ((1.0, 2.0), (1,), 0.0, 1)), id="bucket-count"),
        pytest.param(("x", "histogram", {}, ((2.0, 1.0), (0, 0), 0.0, 0)), id="descending"),
        pytest.param(("x", "histogram", {}, ((1.0,), (5,), 0.0, 2)), id="count-below-buckets"),
        pytest.param(("x", "histogram", {}, 3), id="histogram-not-a-tuple"),
        pytest.param(("x",), id="too-short"),
    ],
)
def test_malformed_records_are_dropped_alone(
    metrics: Metrics, caplog: pytest.LogCaptureFixture, record: tuple[object, ...]
) -> None:
    metrics.register_snapshot_source("mixed", lambda: [record, ("good", "gauge", {}, 7)])

    with caplog.at_level(logging.WARNING, logger="caxton.observability"):
        found = families(metrics)

    assert "cx_x" not in found
    assert values(found["cx_good"][2], "cx_good") == {(): 7}
    assert "metrics snapshot record dropped" in caplog.text


def test_kind_conflicts_and_repeated_label_sets_keep_the_first(metrics: Metrics) -> None:
    metrics.register_snapshot_source("a", lambda: [("depth", "gauge", {"agent": "x"}, 1)])
    metrics.register_snapshot_source(
        "b",
        lambda: [
            ("depth", "counter", {"agent": "y"}, 5),
            ("depth", "gauge", {"agent": "x"}, 2),
            ("depth", "gauge", {"agent": "y"}, 3),
        ],
    )

    kind, _, samples = families(metrics)["cx_depth"]

    assert kind == "gauge"
    assert values(samples, "cx_depth") == {(("agent", "x"),): 1, (("agent", "y"),): 3}


def test_source_names_are_unique_and_removable(metrics: Metrics) -> None:
    metrics.register_snapshot_source("runtime", lambda: [("agents", "gauge", {}, 4)])

    with pytest.raises(ValueError, match="runtime"):
        metrics.register_snapshot_source("runtime", list)
    metrics.unregister_snapshot_source("runtime")
    metrics.unregister_snapshot_source("runtime")  # no error

    assert "cx_agents" not in families(metrics)
    assert metrics.snapshots.source_names == ()


def test_registering_does_not_call_the_source(metrics: Metrics) -> None:
    calls: list[int] = []

    def source() -> list[Sample]:
        calls.append(1)
        return []

    metrics.register_snapshot_source("lazy", source)
    assert calls == []
    families(metrics)
    assert calls == [1]
