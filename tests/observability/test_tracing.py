"""Tracing: OTLP/HTTP export to a real local HTTP server, sampling, and the no-op case."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry import trace

from caxton.config import ObservabilityConfig
from caxton.errors import ConfigError
from caxton.observability import configure_tracing
from caxton.observability.tracing import otlp_traces_url


@dataclass
class Received:
    path: str
    content_type: str
    body: bytes


@dataclass
class Collector:
    """A tiny OTLP/HTTP endpoint that records what it is sent."""

    url: str
    requests: list[Received] = field(default_factory=list)


@pytest.fixture
def collector() -> Iterator[Collector]:
    received: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.append(
                Received(self.path, self.headers.get("Content-Type", ""), self.rfile.read(length))
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield Collector(f"http://127.0.0.1:{server.server_address[1]}", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def tracing_config(endpoint: str, rate: float = 1.0) -> ObservabilityConfig:
    return ObservabilityConfig(
        enable_tracing=True, otlp_endpoint=endpoint, trace_sample_rate=rate, otlp_timeout=5.0
    )


def test_spans_are_posted_as_protobuf(collector: Collector) -> None:
    tracing = configure_tracing(tracing_config(collector.url + "/v1/traces"), node_id="node-1")
    assert tracing.enabled

    with tracing.tracer.start_as_current_span("deliver", attributes={"agent": "echo"}):
        pass
    assert tracing.shutdown()

    [request] = collector.requests
    assert request.path == "/v1/traces"
    assert request.content_type == "application/x-protobuf"
    assert request.body
    assert b"deliver" in request.body
    assert b"node-1" in request.body


def test_bare_endpoint_gets_the_standard_path(collector: Collector) -> None:
    tracing = configure_tracing(tracing_config(collector.url))

    with tracing.tracer.start_as_current_span("x"):
        pass
    tracing.shutdown()

    assert [r.path for r in collector.requests] == ["/v1/traces"]


def test_sample_rate_zero_exports_nothing(collector: Collector) -> None:
    tracing = configure_tracing(tracing_config(collector.url + "/v1/traces", rate=0.0))

    for _ in range(20):
        with tracing.tracer.start_as_current_span("dropped") as span:
            assert not span.get_span_context().trace_flags.sampled
    assert tracing.force_flush()
    tracing.shutdown()

    assert collector.requests == []


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(ObservabilityConfig(enable_tracing=False), id="disabled"),
        pytest.param(
            ObservabilityConfig(enable_tracing=True, otlp_endpoint=None), id="no-endpoint"
        ),
    ],
)
def test_without_exporter_the_tracer_is_a_no_op(config: ObservabilityConfig) -> None:
    tracing = configure_tracing(config)

    with tracing.tracer.start_as_current_span("nothing") as span:
        assert not span.get_span_context().is_valid

    assert not tracing.enabled
    assert tracing.shutdown()


def test_global_provider_is_left_alone(collector: Collector) -> None:
    before = trace.get_tracer_provider()

    configure_tracing(tracing_config(collector.url)).shutdown()

    assert trace.get_tracer_provider() is before


def test_shutdown_is_bounded_when_the_collector_is_down() -> None:
    # Port 9 on loopback: nothing listens, so every export attempt fails fast or times out.
    config = ObservabilityConfig(
        enable_tracing=True, otlp_endpoint="http://127.0.0.1:9/v1/traces", otlp_timeout=0.5
    )
    tracing = configure_tracing(config)
    with tracing.tracer.start_as_current_span("lost"):
        pass

    started = time.monotonic()
    tracing.shutdown()
    tracing.shutdown()  # idempotent

    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize(
    ("config", "key"),
    [
        pytest.param(tracing_config("http://c:4318", rate=1.5), "trace_sample_rate", id="rate"),
        pytest.param(tracing_config("collector:4318"), "otlp_endpoint", id="no-scheme"),
        pytest.param(tracing_config("ftp://c/v1/traces"), "otlp_endpoint", id="scheme"),
    ],
)
def test_bad_settings_are_config_errors(config: ObservabilityConfig, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        configure_tracing(config)


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://c:4318", "http://c:4318/v1/traces"),
        ("http://c:4318/", "http://c:4318/v1/traces"),
        ("https://c/custom/path", "https://c/custom/path"),
        ("http://jaeger-collector:14268/api/traces", "http://jaeger-collector:14268/api/traces"),
    ],
)
def test_otlp_traces_url(endpoint: str, url: str) -> None:
    assert otlp_traces_url(endpoint) == url
