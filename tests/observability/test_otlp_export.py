"""Exporters as operators configure them: protocol from ``otlp_endpoint``, the Jaeger warning,
``otlp_timeout``, and the bounded, counted span queue; against the real test OTLP receiver."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from caxton._version import __version__
from caxton.config import ObservabilityConfig, load_config
from caxton.config.otlp import LegacyJaeger, OtlpProtocol, OtlpTarget, otlp_target
from caxton.errors import ConfigError
from caxton.observability import Tracing, configure_tracing
from tests.otlp_receiver import OtlpReceiver, otlp_receiver_fixture  # noqa: F401


def tracing_config(
    endpoint: str,
    *,
    protocol: OtlpProtocol | None = None,
    timeout: float = 5.0,
    queue: int = 2048,
) -> ObservabilityConfig:
    return ObservabilityConfig(
        enable_tracing=True,
        otlp_endpoint=endpoint,
        trace_sample_rate=1.0,
        otlp_timeout=timeout,
        otlp_protocol=protocol,
        otlp_max_queue_size=queue,
    )


def samples(tracing: Tracing) -> dict[str, int]:
    return {name: value for name, _kind, _labels, value, _help in tracing.metric_samples()}


def http(url: str) -> OtlpTarget:
    return OtlpTarget("http/protobuf", url)


def grpc(address: str, *, tls: bool = False) -> OtlpTarget:
    return OtlpTarget("grpc", address, insecure=not tls)


@pytest.mark.parametrize(
    ("endpoint", "protocol", "expected"),
    [
        ("http://c:4318/v1/traces", None, http("http://c:4318/v1/traces")),
        ("http://c:4318", None, http("http://c:4318/v1/traces")),
        ("https://c/custom/path", None, http("https://c/custom/path")),
        ("http://c:9999", None, http("http://c:9999/v1/traces")),
        ("http://c:4317", None, grpc("c:4317")),
        ("http://c:4317/", None, grpc("c:4317")),
        ("https://c:4317", None, grpc("c:4317", tls=True)),
        ("grpc://c:5555", None, grpc("c:5555")),
        ("grpc://c", None, grpc("c:4317")),
        ("http://c:4317/v1/traces", None, http("http://c:4317/v1/traces")),
        ("http://c:4318", "grpc", grpc("c:4318")),
        ("http://c:4317", "http/protobuf", http("http://c:4317/v1/traces")),
        ("http://j:14268/api/traces", None, LegacyJaeger("http://j:14268/api/traces", "j")),
        ("http://jaeger:14268", None, LegacyJaeger("http://jaeger:14268", "jaeger")),
        ("http://proxy/api/traces", None, LegacyJaeger("http://proxy/api/traces", "proxy")),
        ("http://proxy/api/traces", "http/protobuf", http("http://proxy/api/traces")),
    ],
)  # fmt: skip
def test_the_protocol_rule(
    endpoint: str, protocol: OtlpProtocol | None, expected: OtlpTarget | LegacyJaeger
) -> None:
    assert otlp_target(endpoint, protocol) == expected


@pytest.mark.parametrize(
    ("endpoint", "protocol", "message"),
    [
        ("http://c:4318/v1/traces", "grpc", "has a path, but OTLP/gRPC"),
        ("grpc://c:4317/x", None, "has a path, but OTLP/gRPC"),
        ("grpc://c:4317", "http/protobuf", "is a grpc:// URL"),
        ("ftp://c/v1/traces", None, "not an http://, https:// or grpc:// URL"),
        ("http://c:99999", None, "invalid port"),
    ],
)
def test_contradictions_are_errors(
    endpoint: str, protocol: OtlpProtocol | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        otlp_target(endpoint, protocol)
    key = "otlp_protocol" if protocol else "otlp_endpoint"
    with pytest.raises(ConfigError, match=f"observability.{key}: .*{message}"):
        configure_tracing(tracing_config(endpoint, protocol=protocol))


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        (
            'otlp_endpoint = "http://c:4318/v1/traces"\notlp_protocol = "grpc"',
            "observability.otlp_protocol: 'http://c:4318/v1/traces' has a path, but OTLP/gRPC "
            'takes only a host and port (for example "grpc://otel-collector:4317")',
        ),
        (
            'otlp_endpoint = "grpc://c:4317"\notlp_protocol = "http/protobuf"',
            "observability.otlp_protocol: 'grpc://c:4317' is a grpc:// URL, but otlp_protocol "
            'is "http/protobuf" (write "http://..." for OTLP/HTTP)',
        ),
        (
            'otlp_protocol = "thrift"',
            'observability.otlp_protocol: expected one of grpc, http/protobuf, http, got "thrift"',
        ),
        (
            "otlp_max_queue_size = 0",
            "observability.otlp_max_queue_size: expected a whole number of at least 1, got 0",
        ),
    ],
)
def test_config_file_errors_name_file_and_key(tmp_path: Path, toml: str, error: str) -> None:
    path = tmp_path / "caxton.toml"
    path.write_text(f"[observability]\nenable_tracing = true\n{toml}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.details["errors"] == [f"{path}: {error}"]


def test_new_keys_load(tmp_path: Path) -> None:
    path = tmp_path / "caxton.toml"
    path.write_text(
        '[observability]\notlp_endpoint = "grpc://c:4317"\notlp_protocol = "GRPC"\n'
        "otlp_max_queue_size = 64\n"
    )
    observability = load_config(path, environ={}).observability
    assert observability.otlp_protocol == "grpc"
    assert observability.otlp_max_queue_size == 64
    assert ObservabilityConfig().otlp_protocol is None
    assert ObservabilityConfig().otlp_max_queue_size == 2048


ENDPOINTS = {
    "http": lambda r: r.http_endpoint,
    "http-bare": lambda r: r.http_base,
    "grpc": lambda r: r.grpc_endpoint,
    "grpc-by-key": lambda r: "http://" + r.grpc_address,
}


@pytest.mark.parametrize("how", list(ENDPOINTS))
def test_spans_reach_the_receiver(otlp_receiver: OtlpReceiver, how: str) -> None:
    protocol: OtlpProtocol | None = "grpc" if how == "grpc-by-key" else None
    tracing = configure_tracing(
        tracing_config(ENDPOINTS[how](otlp_receiver), protocol=protocol), node_id="node-7"
    )
    with tracing.tracer.start_as_current_span("deliver", attributes={"agent": "echo"}):
        pass
    assert tracing.force_flush()

    [span] = otlp_receiver.wait_for(lambda s: s.name == "deliver")
    assert span.protocol == ("grpc" if how.startswith("grpc") else "http")
    assert span.attributes == {"agent": "echo"}
    assert span.resource["service.name"] == "caxton"
    assert span.resource["service.version"] == __version__
    assert span.resource["service.instance.id"] == "node-7"
    assert samples(tracing)["trace_spans_exported"] == 1
    assert tracing.shutdown()


def test_the_jaeger_thrift_url_warns_once_and_exports_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="caxton.observability.tracing"):
        tracing = configure_tracing(tracing_config("http://jaeger-collector:14268/api/traces"))

    assert not tracing.enabled
    [record] = [r for r in caplog.records if r.name == "caxton.observability.tracing"]
    message = record.getMessage()
    assert "Jaeger's legacy Thrift collector" in message
    assert "does not accept OTLP; no spans are exported" in message
    assert 'otlp_endpoint = "http://jaeger-collector:4318/v1/traces"' in message
    assert '"grpc://jaeger-collector:4317"' in message
    with tracing.tracer.start_as_current_span("nothing") as span:
        assert not span.get_span_context().is_valid


def test_otlp_protocol_overrides_the_jaeger_guess(
    otlp_receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = otlp_receiver.http_base + "/api/traces"  # an OTLP receiver at Jaeger's path
    with caplog.at_level(logging.WARNING, logger="caxton.observability.tracing"):
        tracing = configure_tracing(tracing_config(endpoint, protocol="http/protobuf"))

    assert tracing.enabled
    assert not [r for r in caplog.records if r.name == "caxton.observability.tracing"]
    tracing.shutdown()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_otlp_timeout_bounds_an_export_to_a_hung_collector(
    otlp_receiver: OtlpReceiver, protocol: str
) -> None:
    otlp_receiver.set_mode("hang")
    endpoint = otlp_receiver.http_endpoint if protocol == "http" else otlp_receiver.grpc_endpoint
    tracing = configure_tracing(tracing_config(endpoint, timeout=1.0))
    with tracing.tracer.start_as_current_span("lost"):
        pass

    started = time.monotonic()
    tracing.force_flush()  # the export runs on (and outlives) a helper thread
    while samples(tracing)["trace_spans_export_failed"] == 0:
        assert time.monotonic() - started < 5.0, "the export was not given up (default: 10 s)"
        time.sleep(0.02)
    took = time.monotonic() - started

    assert 0.8 < took < 5.0
    assert otlp_receiver.requests[protocol] >= 1
    assert samples(tracing)["trace_spans_exported"] == 0
    tracing.shutdown(0.1)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_full_queue_drops_and_counts_without_blocking(
    otlp_receiver: OtlpReceiver, protocol: str
) -> None:
    otlp_receiver.set_mode("hang")
    endpoint = otlp_receiver.http_endpoint if protocol == "http" else otlp_receiver.grpc_endpoint
    tracing = configure_tracing(tracing_config(endpoint, timeout=30.0, queue=8))
    assert samples(tracing)["trace_span_queue_capacity"] == 8

    started = time.monotonic()
    for n in range(200):
        with tracing.tracer.start_as_current_span(f"span-{n}"):
            pass
    took = time.monotonic() - started

    # At most one batch of 8 is in the hung export and 8 wait: the rest were dropped, counted.
    counts = samples(tracing)
    assert took < 1.0, f"200 spans took {took:.2f}s with a hung collector"
    assert counts["trace_spans_dropped"] >= 200 - 16
    assert counts["trace_span_queue_size"] == 8
    assert counts["trace_spans_exported"] == 0
    assert not tracing.shutdown(0.2)  # the hung collector does not hold the shutdown


def test_counts_add_up_with_a_healthy_collector(otlp_receiver: OtlpReceiver) -> None:
    tracing = configure_tracing(tracing_config(otlp_receiver.grpc_endpoint, queue=4096))
    for n in range(1000):
        with tracing.tracer.start_as_current_span(f"span-{n}"):
            pass
    assert tracing.force_flush()

    otlp_receiver.wait_for(count=1000)
    counts = samples(tracing)
    assert counts["trace_spans_exported"] == 1000
    assert counts["trace_spans_dropped"] == counts["trace_spans_export_failed"] == 0
    assert counts["trace_span_queue_size"] == 0
    assert tracing.shutdown()


def test_without_exporter_there_are_no_samples() -> None:
    assert list(configure_tracing(ObservabilityConfig()).metric_samples()) == []


def test_config_check_warns_about_the_jaeger_url(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from caxton.cli import cli

    path = tmp_path / "caxton.toml"
    path.write_text(
        '[observability]\nenable_tracing = true\notlp_endpoint = "http://jaeger:14268/api/traces"\n'
    )
    result = CliRunner().invoke(cli, ["config", "check", str(path)])

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: OK\n"
    assert result.stderr.startswith(f"{path}: warning: observability.otlp_endpoint: ")
    assert "Jaeger's legacy Thrift collector" in result.stderr
    path.write_text(
        '[observability]\nenable_tracing = true\notlp_endpoint = "http://jaeger:4318/v1/traces"\n'
    )
    assert CliRunner().invoke(cli, ["config", "check", str(path)]).stderr == ""


SDK = "opentelemetry.sdk"
OTLP = "opentelemetry.exporter.otlp.proto"
LOADED = """
import json, sys
from pathlib import Path
from caxton.config import Config, CoordinationConfig, ObservabilityConfig
from caxton.server import Server

endpoint = sys.argv[2] or None
observability = ObservabilityConfig(enable_tracing=endpoint is not None, otlp_endpoint=endpoint)
coordination = CoordinationConfig(local_state_path=Path(sys.argv[1]))
Server(Config(coordination=coordination, observability=observability)).tracing.shutdown()
roots = ("grpc", "opentelemetry.sdk", "opentelemetry.exporter.otlp.proto", "caxton.cluster")
found = {root for root in roots for m in sys.modules if m == root or m.startswith(root + ".")}
print(json.dumps(sorted(found)))
"""


@pytest.mark.parametrize(
    ("endpoint", "loaded"),
    [
        ("", []),
        ("http://127.0.0.1:9/v1/traces", [OTLP, SDK]),
        ("grpc://127.0.0.1:9", ["grpc", OTLP, SDK]),
    ],
    ids=["off", "http", "grpc"],
)
def test_the_sdk_and_grpc_load_only_when_used(
    tmp_path: Path, endpoint: str, loaded: list[str]
) -> None:
    """Tracing off loads no SDK, no exporter and no gRPC (startup time); OTLP/HTTP no gRPC."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", LOADED, str(tmp_path / "local.db"), endpoint],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout.splitlines()[-1]) == loaded


def test_a_cluster_nodes_spans_carry_its_kept_name(
    tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    """Without ``node_name`` a cluster node names itself once (kept in the data directory);
    its spans' ``service.instance.id`` is that name, so spans of two nodes can be told apart."""
    from caxton.config import Config, CoordinationConfig
    from caxton.server import Server

    coordination = CoordinationConfig(
        local_state_path=tmp_path / "data" / "local.db", cluster_enabled=True
    )
    server = Server(
        Config(coordination=coordination, observability=tracing_config(otlp_receiver.grpc_endpoint))
    )
    with server.tracing.tracer.start_as_current_span("probe"):
        pass
    assert server.tracing.force_flush()

    [span] = otlp_receiver.wait_for(lambda s: s.name == "probe")
    kept = (tmp_path / "data" / "node-id").read_text().strip()
    assert span.resource["service.instance.id"] == kept
    server.tracing.shutdown()
