"""The test OTLP receiver itself: what the real OpenTelemetry exporters send arrives decoded."""

from __future__ import annotations

import threading
import time

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from tests.otlp_receiver import OtlpReceiver, otlp_receiver_fixture  # noqa: F401


def exporter(receiver: OtlpReceiver, protocol: str, timeout: float = 5.0) -> SpanExporter:
    if protocol == "grpc":
        return GrpcSpanExporter(endpoint=receiver.grpc_address, insecure=True, timeout=timeout)
    return HttpSpanExporter(endpoint=receiver.http_endpoint, timeout=timeout)


def provider(span_exporter: SpanExporter) -> TracerProvider:
    result = TracerProvider(
        resource=Resource.create({"service.name": "probe", "node": "n1"}),
        shutdown_on_exit=False,
    )
    result.add_span_processor(SimpleSpanProcessor(span_exporter))
    return result


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_spans_arrive_decoded(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    tracer_provider = provider(exporter(otlp_receiver, protocol))
    tracer = tracer_provider.get_tracer("probe-scope")
    with tracer.start_as_current_span("parent", kind=trace.SpanKind.SERVER) as parent:
        parent.set_attribute("agent", "echo")
        with tracer.start_as_current_span("child") as child:
            child.add_event("queued", {"seconds": 0.5})
            child.set_status(trace.Status(trace.StatusCode.ERROR, "boom"))
    tracer_provider.shutdown()

    spans = otlp_receiver.wait_for(count=2)
    by_name = {s.name: s for s in spans}
    parent_span, child_span = by_name["parent"], by_name["child"]
    assert parent_span.kind == "server"
    assert parent_span.parent_span_id is None
    assert parent_span.attributes == {"agent": "echo"}
    assert child_span.parent_span_id == parent_span.span_id
    assert child_span.trace_id == parent_span.trace_id
    assert len(child_span.trace_id) == 32
    assert [(e.name, e.attributes) for e in child_span.events] == [("queued", {"seconds": 0.5})]
    assert (child_span.status, child_span.status_message) == ("error", "boom")
    assert child_span.resource["service.name"] == "probe"
    assert child_span.resource["node"] == "n1"
    assert child_span.scope == "probe-scope"
    assert child_span.protocol == protocol
    assert list(otlp_receiver.traces()) == [parent_span.trace_id]
    assert otlp_receiver.requests[protocol] == 2


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unavailable_mode_fails_the_export(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    otlp_receiver.set_mode("unavailable")
    span_exporter = exporter(otlp_receiver, protocol, timeout=0.5)
    tracer_provider = provider(span_exporter)
    with tracer_provider.get_tracer("t").start_as_current_span("lost"):
        pass
    tracer_provider.shutdown()

    assert otlp_receiver.requests[protocol] >= 1
    assert otlp_receiver.spans() == []


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_hang_mode_never_answers(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    otlp_receiver.set_mode("hang")
    span_exporter = exporter(otlp_receiver, protocol, timeout=0.5)
    tracer_provider = provider(span_exporter)
    span = tracer_provider.get_tracer("t").start_span("lost")
    span.end()  # exported by SimpleSpanProcessor, which waits for the hung request
    started = time.monotonic()
    result = span_exporter.export([span])  # type: ignore[list-item]

    assert result is SpanExportResult.FAILURE
    assert 0.4 < time.monotonic() - started < 5.0
    assert otlp_receiver.requests[protocol] >= 2
    assert otlp_receiver.spans() == []
    otlp_receiver.set_mode("ok")
    tracer_provider.shutdown()


def test_refused_endpoint_refuses(otlp_receiver: OtlpReceiver) -> None:
    span_exporter = HttpSpanExporter(endpoint=otlp_receiver.refused_endpoint, timeout=0.5)
    tracer_provider = provider(span_exporter)
    span = tracer_provider.get_tracer("t").start_span("lost")
    span.end()

    assert span_exporter.export([span]) is SpanExportResult.FAILURE  # type: ignore[list-item]
    tracer_provider.shutdown()


def test_close_releases_hung_requests_and_stops() -> None:
    receiver = OtlpReceiver().start()
    receiver.set_mode("hang")
    span_exporter = HttpSpanExporter(endpoint=receiver.http_endpoint, timeout=3)
    tracer_provider = provider(span_exporter)
    tracer = tracer_provider.get_tracer("t")
    span = tracer.start_span("lost")
    worker = threading.Thread(target=span.end)  # blocks in the hung export
    worker.start()
    deadline = time.monotonic() + 5
    while receiver.requests["http"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    receiver.close()

    assert time.monotonic() - started < 2.0  # the hung handler did not hold the stop
    worker.join(10)  # the exporter gives up within its 3 s timeout
    assert not worker.is_alive()
    receiver.close()  # idempotent


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_refuse_mode_closes_the_ports_and_ok_reopens_them(
    otlp_receiver: OtlpReceiver, protocol: str
) -> None:
    otlp_receiver.set_mode("refuse")
    span_exporter = exporter(otlp_receiver, protocol, timeout=0.5)
    tracer_provider = provider(span_exporter)
    span = tracer_provider.get_tracer("t").start_span("lost")
    span.end()
    assert span_exporter.export([span]) is SpanExportResult.FAILURE  # type: ignore[list-item]
    assert otlp_receiver.requests[protocol] == 0  # never reached a handler

    otlp_receiver.set_mode("ok")
    span = tracer_provider.get_tracer("t").start_span("back")
    span.end()

    [received] = otlp_receiver.wait_for(lambda s: s.name == "back")
    assert received.protocol == protocol
    tracer_provider.shutdown()
