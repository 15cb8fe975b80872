"""Metrics: names, labels, buckets and prefix as Prometheus sees them in the exposition."""

from __future__ import annotations

import platform

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from caxton._version import __version__
from caxton.errors import ConfigError
from caxton.observability import UNMATCHED_ROUTE, Metrics, render_metrics
from caxton.runtime.sandbox import accel


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def scrape(registry: CollectorRegistry) -> dict[str, list[Sample]]:
    """Every sample of the text exposition, grouped by family name."""
    body, content_type = render_metrics(registry)
    assert content_type.startswith("text/plain; version=0.0.4")
    return {
        family.name: list(family.samples)
        for family in text_string_to_metric_families(body.decode())
    }


def value(samples: list[Sample], name: str, **labels: str) -> float:
    [match] = [s.value for s in samples if s.name == name and s.labels == labels]
    return match


def test_http_requests_are_counted_by_route_template(registry: CollectorRegistry) -> None:
    metrics = Metrics.create(registry)

    metrics.observe_http("get", "/api/v1/agents/{name}", 200, 0.003)
    metrics.observe_http("GET", "/api/v1/agents/{name}", 200, 0.2)
    metrics.observe_http("POST", "/api/v1/messages", 202, 0.04)
    metrics.observe_http("GET", None, 404, 0.001)
    metrics.observe_http("BREW", UNMATCHED_ROUTE, 405, 0.001)

    families = scrape(registry)
    requests = families["caxton_http_requests"]
    name = "caxton_http_requests_total"
    assert value(requests, name, method="GET", route="/api/v1/agents/{name}", status="200") == 2
    assert value(requests, name, method="POST", route="/api/v1/messages", status="202") == 1
    assert value(requests, name, method="GET", route="unmatched", status="404") == 1
    assert value(requests, name, method="OTHER", route="unmatched", status="405") == 1


def test_duration_histogram_uses_the_configured_buckets(registry: CollectorRegistry) -> None:
    buckets = (0.01, 0.1, 1.0, 30.0)
    metrics = Metrics.create(registry, buckets=buckets)

    metrics.observe_http("GET", "/health", 200, 0.05)
    metrics.observe_http("GET", "/health", 200, 5.0)

    samples = scrape(registry)["caxton_http_request_duration_seconds"]
    bucket_samples = [s for s in samples if s.name.endswith("_bucket")]
    assert [float(s.labels["le"]) for s in bucket_samples] == [*buckets, float("inf")]
    assert [s.value for s in bucket_samples] == [0, 1, 1, 2, 2]
    labels = {"method": "GET", "route": "/health"}
    assert value(samples, "caxton_http_request_duration_seconds_count", **labels) == 2
    assert value(samples, "caxton_http_request_duration_seconds_sum", **labels) == 5.05


def test_default_buckets_are_the_seed_buckets(registry: CollectorRegistry) -> None:
    Metrics.create(registry).observe_http("GET", "/health", 200, 0.0)

    samples = scrape(registry)["caxton_http_request_duration_seconds"]
    bounds = [s.labels["le"] for s in samples if s.name.endswith("_bucket")]

    assert bounds == [
        "0.005",
        "0.01",
        "0.025",
        "0.05",
        "0.1",
        "0.25",
        "0.5",
        "1.0",
        "2.5",
        "5.0",
        "10.0",
        "+Inf",
    ]


def test_connections_gauge(registry: CollectorRegistry) -> None:
    metrics = Metrics.create(registry)

    metrics.connection_opened()
    metrics.connection_opened()
    metrics.connection_closed()

    samples = scrape(registry)["caxton_http_connections_active"]
    assert value(samples, "caxton_http_connections_active") == 1


def test_build_info_up_and_start_time(registry: CollectorRegistry) -> None:
    Metrics.create(registry, start_time=1_700_000_000.0)

    families = scrape(registry)

    [info] = families["caxton_build_info"]
    assert info.value == 1
    assert info.labels["version"] == __version__
    assert info.labels["python"] == platform.python_version()
    assert info.labels["wasmtime"].split(".")[0].isdigit()
    assert info.labels["hot_path"] == accel.describe()
    assert value(families["caxton_up"], "caxton_up") == 1
    assert value(families["caxton_start_time_seconds"], "caxton_start_time_seconds") == 1.7e9


def test_process_metrics_carry_the_prefix(registry: CollectorRegistry) -> None:
    Metrics.create(registry, prefix="edge")

    families = scrape(registry)

    for name in (
        "edge_process_resident_memory_bytes",
        "edge_process_cpu_seconds",
        "edge_process_open_fds",
        "edge_process_start_time_seconds",
    ):
        assert name in families, name
    assert (
        value(families["edge_process_resident_memory_bytes"], "edge_process_resident_memory_bytes")
        > 0
    )


def test_prefix_is_honoured_everywhere(registry: CollectorRegistry) -> None:
    metrics = Metrics.create(registry, prefix="edge", process_metrics=False)
    metrics.observe_http("GET", "/health", 200, 0.001)
    metrics.register_snapshot_source("x", lambda: [("things", "gauge", {}, 1)])

    families = scrape(registry)

    assert families
    assert all(name.startswith("edge_") for name in families), sorted(families)
    assert "edge_things" in families


def test_two_bundles_on_fresh_registries_do_not_collide() -> None:
    first = Metrics.create(CollectorRegistry())
    second = Metrics.create(CollectorRegistry())

    first.observe_http("GET", "/health", 200, 0.001)

    assert [s.value for s in scrape(first.registry)["caxton_http_requests"]] == [1]
    assert scrape(second.registry)["caxton_http_requests"] == []


@pytest.mark.parametrize(
    ("prefix", "buckets"),
    [
        pytest.param("9caxton", (0.1,), id="prefix-starts-with-digit"),
        pytest.param("cax-ton", (0.1,), id="prefix-with-dash"),
        pytest.param("caxton", (), id="no-buckets"),
        pytest.param("caxton", (0.5, 0.1), id="descending-buckets"),
        pytest.param("caxton", (0.1, 0.1), id="repeated-bucket"),
        pytest.param("caxton", (0.1, float("inf")), id="infinite-bucket"),
    ],
)
def test_bad_prefix_or_buckets_are_config_errors(
    registry: CollectorRegistry, prefix: str, buckets: tuple[float, ...]
) -> None:
    with pytest.raises(ConfigError):
        Metrics.create(registry, prefix=prefix, buckets=buckets)


def test_openmetrics_when_asked(registry: CollectorRegistry) -> None:
    Metrics.create(registry, process_metrics=False)

    body, content_type = render_metrics(registry, "application/openmetrics-text; version=1.0.0")

    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
