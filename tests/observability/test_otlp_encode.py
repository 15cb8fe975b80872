"""The span export's OTLP encoding is the library's, message for message, only faster.

Each case encodes a batch both ways and compares the parsed ``ExportTraceServiceRequest``s
(field by field, oneofs and presence included), so a collector cannot tell them apart.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as library
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from caxton.observability import _otlp_encode
from caxton.observability._otlp_encode import (
    EncodedRequest,
    Unsupported,
    encode_spans,
    encode_spans_serialized,
    install,
    request_around,
    span_bytes,
    span_field,
)
from caxton.observability.spans import SCOPE as BUILT_SCOPE
from caxton.observability.spans import SpanBuilder
from caxton.runtime.tracing import SpanLog
from caxton.wire import trace
from caxton.wire.trace import TraceContext

SAMPLED = TraceFlags(TraceFlags.SAMPLED)
NODE = Resource.create({"service.name": "caxton", "service.instance.id": "node-1"})
OTHER = Resource.create({"service.name": "caxton", "service.instance.id": "node-2", "n": 3})
SCOPE = InstrumentationScope("caxton", "1.2.3")


def span(
    name: str = "caxton.handle",
    *,
    trace_id: int = 0x0123456789ABCDEF0123456789ABCDEF,
    span_id: int = 0x1122334455667788,
    parent: int | None = 0x99AABBCCDDEEFF00,
    remote_parent: bool = False,
    attributes: dict[str, Any] | None = None,
    kind: SpanKind = SpanKind.CONSUMER,
    status: Status | None = None,
    resource: Resource = NODE,
    scope: InstrumentationScope | None = SCOPE,
    start: int | None = 1_764_849_600_000_000_000,
    end: int | None = 1_764_849_600_000_050_000,
    **extra: Any,
) -> ReadableSpan:
    return ReadableSpan(
        name,
        context=SpanContext(trace_id, span_id, is_remote=False, trace_flags=SAMPLED),
        parent=None
        if parent is None
        else SpanContext(trace_id, parent, is_remote=remote_parent, trace_flags=SAMPLED),
        resource=resource,
        attributes=attributes,
        kind=kind,
        status=status or Status(StatusCode.UNSET),
        start_time=start,
        end_time=end,
        instrumentation_scope=scope,
        **extra,
    )


def same(spans: list[ReadableSpan]) -> None:
    ours = encode_spans(spans)
    theirs = library(spans)
    assert ours == theirs
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(
        deterministic=True
    )


def test_the_spans_a_node_builds_encode_as_the_library_does() -> None:
    handle = span(
        attributes={
            "messaging.message.id": "m-1",
            "messaging.message.conversation_id": "c-1",
            "caxton.message.performative": "request",
            "caxton.agent.name": "pong",
            "caxton.agent.version": 3,
            "caxton.outcome": "ok",
            "caxton.fuel_used": 12_345,
            "caxton.queue_time_ms": 0.0421,
        }
    )
    send = span("caxton.send", span_id=7, parent=0x1122334455667788, kind=SpanKind.PRODUCER)
    failed = span("caxton.handle", span_id=8, status=Status(StatusCode.ERROR))
    described = span("caxton.dead_letter", span_id=9, status=Status(StatusCode.ERROR, "boom"))
    same([handle, send, failed, described])


def test_repeated_values_of_each_type_encode_as_the_library_does() -> None:
    """Values that repeat are encoded once and reused: an integer, a boolean equal to it and a
    string of the same key each keep their own type, in any order, and a status or a name seen
    before does not stick to the next span."""
    attribute_sets: list[dict[str, Any]] = [
        {"k": 1, "v": "ok"},
        {"k": True, "v": "ok"},
        {"k": "1", "v": 1},
        {"k": 1.0, "v": False},
        {"k": 0, "v": "ok"},
        {"k": False, "v": 0},
    ]
    statuses = [Status(StatusCode.UNSET), Status(StatusCode.ERROR, "boom"), Status(StatusCode.OK)]
    spans = [
        span(name, attributes=attributes, status=status, span_id=0x1000 + n)
        for n, (name, attributes, status) in enumerate(
            (name, attributes, status)
            for name in ("caxton.handle", "caxton.send")
            for attributes in attribute_sets
            for status in statuses
        )
    ]
    same(spans)
    same(list(reversed(spans)))


def test_roots_remote_parents_kinds_and_empty_values_encode_as_the_library_does() -> None:
    same(
        [
            span("caxton.accept", parent=None, kind=SpanKind.SERVER),
            span("caxton.receive", parent=5, remote_parent=True, kind=SpanKind.CLIENT),
            span("x", kind=SpanKind.INTERNAL, attributes={"empty": "", "zero": 0, "no": False}),
            span("", start=None, end=None, attributes={"f": 0.0, "neg": -5, "yes": True}),
            span("dropped", attributes=BoundedAttributes(1, {"a": 1, "b": 2})),  # type: ignore[arg-type]
        ]
    )


def test_spans_of_several_resources_and_scopes_are_grouped_as_the_library_groups_them() -> None:
    other_scope = InstrumentationScope("other", None, "https://schema", {"k": "v"})
    same(
        [
            span(span_id=1),
            span(span_id=2, resource=OTHER),
            span(span_id=3, scope=other_scope),
            span(span_id=4, scope=None),
            span(span_id=5),
            span(span_id=6, resource=OTHER, scope=other_scope),
            # the same attribute as a resource's, a scope's and a span's (three field numbers)
            span(span_id=7, attributes={"service.name": "caxton", "k": "v"}, scope=other_scope),
        ]
    )


def test_what_it_does_not_write_itself_the_library_writes() -> None:
    context = SpanContext(1, 2, is_remote=False, trace_flags=SAMPLED)
    for odd in (
        span(events=[Event("e", {"a": 1}, timestamp=5)]),
        span(links=[Link(context, {"b": "c"})]),
        span(attributes={"list": ["a", "b"]}),
        span(attributes={"raw": b"\x00\x01"}),
        span(attributes={"big": 1 << 70}),
    ):
        same([span(span_id=3), odd])
    traced = ReadableSpan(
        "s",
        context=SpanContext(
            1, 2, is_remote=False, trace_flags=SAMPLED, trace_state=TraceState([("k", "v")])
        ),
        resource=NODE,
    )
    same([traced])


values = st.one_of(
    st.text(),
    st.booleans(),
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.floats(allow_nan=False),
)


@settings(max_examples=200, deadline=None)
@given(
    attributes=st.dictionaries(st.text(max_size=20), values, max_size=8),
    name=st.text(max_size=30),
    ids=st.tuples(st.integers(1, (1 << 128) - 1), st.integers(1, (1 << 64) - 1)),
    parent=st.one_of(st.none(), st.integers(1, (1 << 64) - 1)),
    kind=st.sampled_from(list(SpanKind)),
    code=st.sampled_from(list(StatusCode)),
    times=st.tuples(st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1)),
)
def test_any_attributes_ids_kinds_and_times_encode_as_the_library_does(
    attributes: dict[str, Any],
    name: str,
    ids: tuple[int, int],
    parent: int | None,
    kind: SpanKind,
    code: StatusCode,
    times: tuple[int, int],
) -> None:
    description = "why" if code is StatusCode.ERROR else None
    same(
        [
            span(
                name,
                trace_id=ids[0],
                span_id=ids[1],
                parent=parent,
                attributes=attributes,
                kind=kind,
                status=Status(code, description),
                start=times[0],
                end=times[1],
            )
        ]
    )


def test_the_spans_a_node_builds_never_go_the_library_s_slow_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(spans: Any) -> None:
        raise AssertionError("the library encoded a batch")

    monkeypatch.setattr(_otlp_encode, "_library", refuse)
    batch = [span(span_id=i + 1, attributes={"a": "b", "n": i, "q": 0.5}) for i in range(50)]
    assert encode_spans(batch) == library(batch)


def test_install_makes_both_exporters_use_it() -> None:
    http, grpc = _otlp_encode.EXPORTERS
    for name in (http, grpc):
        importlib.import_module(name)
    changed = install()
    assert set(changed) == {http, grpc}
    assert importlib.import_module(grpc).encode_spans is encode_spans
    encode_http = importlib.import_module(http).encode_spans
    assert encode_http is encode_spans_serialized
    assert install() == changed  # again: nothing else to do, nothing broken
    # what the HTTP exporter sends: the library's request, byte for byte once parsed
    batch = [span(span_id=1, attributes={"a": "b"}), span("x", span_id=2, parent=None)]
    sent = encode_http(batch).SerializePartialToString()
    assert ExportTraceServiceRequest.FromString(sent) == library(batch)


def encoded_twin(readable: ReadableSpan) -> bytes:
    """``readable`` written as a span built as bytes is (`span_bytes`)."""
    context, parent = readable.context, readable.parent
    assert context is not None
    return span_bytes(
        context.trace_id,
        context.span_id,
        None if parent is None else parent.span_id,
        readable.name,
        readable.kind,
        readable.start_time,
        readable.end_time,
        readable.attributes,
        code=readable.status.status_code.value,
        description=readable.status.description,
        remote_parent=parent is not None and parent.is_remote,
    )


def test_spans_encoded_when_built_are_the_library_s_spans() -> None:
    built = [
        span(span_id=1, attributes={"caxton.agent.name": "pong", "caxton.fuel_used": 7}),
        span("caxton.send", span_id=2, kind=SpanKind.PRODUCER, status=Status(StatusCode.ERROR)),
        span("caxton.accept", span_id=3, parent=None, kind=SpanKind.SERVER, resource=OTHER),
    ]
    for one in built:
        fields = [span_field(encoded_twin(one))]
        request = request_around(one.resource, one.instrumentation_scope, fields)
        assert ExportTraceServiceRequest.FromString(request) == library([one])


def test_a_request_written_around_encoded_spans_is_the_library_s_request() -> None:
    built = [
        span(span_id=1, attributes={"caxton.agent.name": "pong", "caxton.fuel_used": 7}),
        span("caxton.send", span_id=2, kind=SpanKind.PRODUCER, status=Status(StatusCode.ERROR)),
    ]
    resource, scope = built[0].resource, built[0].instrumentation_scope
    fields = [span_field(encoded_twin(s)) for s in built]
    request = EncodedRequest(request_around(resource, scope, fields), len(fields))
    assert len(request) == 2
    assert encode_spans(request) == library(built)
    assert encode_spans_serialized(request).SerializePartialToString() == request.data


def test_a_value_it_does_not_write_is_refused_before_it_is_queued() -> None:
    with pytest.raises(Unsupported):
        span_bytes(1, 2, None, "s", SpanKind.INTERNAL, 1, 2, {"list": ["a"]})


class _Kept(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def _conversation(log: SpanLog) -> None:
    """Records of a traced ping/pong exchange: each handled message is the one sent before it
    (so its send span is remembered), the first one is not; a failure; fuel or none; a message
    to two receivers, one without a performative, one with a long id."""
    context = TraceContext()
    message = trace.with_traceparent(
        b'{"sender":"client","message_id":"n-0","created_at":"2026-12-04T03:13:48.123Z",'
        b'"conversation_id":"c-1","receiver":"ping","performative":"request","content":1}',
        trace.format_traceparent(b"4bf92f3577b34da6a3ce929d0e0e4736", 0xF00D),
    )
    for i in range(1, 6):
        agent, peer = ("ping", "pong") if i % 2 else ("pong", "ping")
        span = context.begin(message, agent)
        to = b'["%s","audit"]' % peer.encode() if i == 4 else b'"%s"' % peer.encode()
        performative = b"" if i == 2 else b'"performative":"inform",'  # (none: left out)
        sent = context.stamp(
            b'{"sender":"%s","message_id":"n-%d%s","created_at":"2026-12-04T03:13:48.124Z",'
            b'"conversation_id":"c-1","receiver":%s,%s"content":%d}'
            % (agent.encode(), i, b"-long" * 30 if i == 3 else b"", to, performative, i)
        )
        outcome, fuel = ("trap", None) if i == 3 else ("ok", 1000 + i)
        log.add(("handle", span, 10 * i, 10 * i + 5, agent, i, message, outcome, fuel,
                 *context.sends))  # fmt: skip
        message = sent


def test_a_builder_that_encodes_builds_the_spans_of_one_that_does_not() -> None:
    resource = Resource.create({"service.name": "caxton", "service.instance.id": "node-1"})
    readable_log, encoded_log = SpanLog(), SpanLog()
    _conversation(readable_log)
    encoded_log.records.extend(readable_log.records)
    kept = _Kept()
    SpanBuilder(readable_log, kept, resource).drain()
    fields: list[bytes] = []
    assert SpanBuilder(encoded_log, _Kept(), resource, encoded=fields.extend).drain() == 10
    assert len(kept.spans) == len(fields) == 10
    encoded = ExportTraceServiceRequest.FromString(request_around(resource, BUILT_SCOPE, fields))
    ids = [s.span_id for s in encoded.resource_spans[0].scope_spans[0].spans]
    assert encoded == library(kept.spans)
    handles = [s for s in kept.spans if s.name == "caxton.handle"]
    assert all("caxton.queue_time_ms" in (h.attributes or {}) for h in handles)
    assert len(handles) == 5
    assert len(set(ids)) == 10
