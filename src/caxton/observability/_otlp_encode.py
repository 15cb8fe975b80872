"""OTLP encoding of finished spans, written straight to protobuf's wire format.

The OTLP exporters encode each batch with `encode_spans` of
``opentelemetry-exporter-otlp-proto-common``, which builds a protobuf object per span, per
attribute and per value before serializing them: about 23 µs per span here, most of what a
traced message's spans cost the span export process. `encode_spans` below writes the same
``ExportTraceServiceRequest`` bytes directly (about 7 µs per `ReadableSpan`, less for a span
built as bytes from the start: `span_bytes`, `_span_encode`) and hands the exporter that
request parsed (one C call), so the exporters, their retries and their transports are the
SDK's own. The output is the library's, message for message
(tests/observability/test_otlp_encode.py compares them); a span this module does not write
itself (events, links, a trace state, dropped attributes, an attribute that is a list or
bytes) is written by the library, alone, and put in its place.

`install` makes the loaded exporter modules use it (their module-level ``encode_spans`` name,
which is what their ``export`` calls); an SDK that no longer has that name is left as it is.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as _library
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind

__all__ = [
    "EncodedRequest",
    "SerializedRequest",
    "Unsupported",
    "encode_spans",
    "encode_spans_serialized",
    "install",
    "request_around",
    "request_bytes",
    "span_bytes",
    "span_field",
]

#: The exporter modules whose ``encode_spans`` `install` replaces.
EXPORTERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack


class Unsupported(Exception):
    """A span (or value) this encoder leaves to the library."""


def _varint(value: int) -> bytes:
    return _VARINTS[value] if value < _SMALL else _slow_varint(value)


def _slow_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


#: Varints below `_SMALL` (every length and tag of a span's fields), computed once.
_SMALL = 1 << 14
_VARINTS = [_slow_varint(n) for n in range(_SMALL)]


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _text(number: int, value: str | None) -> bytes:
    return _field(number, value.encode()) if value else b""


def _value(value: Any) -> bytes:
    """An ``AnyValue``'s bytes (its value is a oneof: a zero or an empty string is written)."""
    if value is None:
        return b""
    if value is True or value is False:
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(1, value.encode())
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise Unsupported("an integer out of the int64 range")
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    raise Unsupported(type(value).__name__)


#: A ``KeyValue``'s key field by key, and a whole ``KeyValue`` field by (field number, key,
#: value) for text and integer values: names, versions, performatives, outcomes and the fuel a
#: handler uses repeat from span to span (bounded: each is cleared when full).
_keys: dict[str, bytes] = {}
_pairs: dict[tuple[int, str, Any], bytes] = {}
_int_pairs: dict[tuple[int, str, Any], bytes] = {}
_CACHED = 4096
#: Keys whose text values do not repeat (a message id): caching them would evict the others.
_UNIQUE = frozenset({"messaging.message.id"})


def _pair(key: str, value: Any) -> bytes:
    head = _keys.get(key)
    if head is None:
        if len(_keys) >= _CACHED:
            _keys.clear()
        head = _keys[key] = _text(1, key)
    return head + _field(2, _value(value))


def _attributes(number: int, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    out = []
    pairs, int_pairs = _pairs, _int_pairs
    for key, value in attributes.items():
        kind = value.__class__
        if kind is str and key not in _UNIQUE:
            cache = pairs
        elif kind is int:  # not a bool (its own class), whose equal int would share the key
            cache = int_pairs
        else:
            out.append(_field(number, _pair(key, value)))
            continue
        whole = cache.get((number, key, value))
        if whole is None:
            whole = _field(number, _pair(key, value))
            if len(cache) >= _CACHED:
                cache.clear()
            cache[(number, key, value)] = whole
        out.append(whole)
    return b"".join(out)


#: A span's fields that repeat: its name's (by name, bounded), its kind's, an unset status's and
#: the parent flags'.
_names: dict[str, bytes] = {}
_KINDS = {kind: b"\x30" + _varint(kind.value + 1) for kind in SpanKind}
_UNSET_STATUS = _field(15, b"")
_LOCAL_PARENT = b"\x85\x01" + _pack_fixed32(_HAS_IS_REMOTE)
_REMOTE_PARENT = b"\x85\x01" + _pack_fixed32(_HAS_IS_REMOTE | _IS_REMOTE)


def span_bytes(
    trace_id: int,
    span_id: int,
    parent: int | None,
    name: str,
    kind: SpanKind,
    start: int | None,
    end: int | None,
    attributes: Mapping[str, Any] | None,
    *,
    code: int = 0,
    description: str | None = None,
    remote_parent: bool = False,
) -> bytes:
    """A ``Span`` message (no events, links or trace state; raises `Unsupported` for an
    attribute value it does not write)."""
    named = _names.get(name)
    if named is None:
        if len(_names) >= _CACHED:
            _names.clear()
        named = _names[name] = _text(5, name)
    if code or description:
        status = _field(15, _text(2, description) + (b"\x18" + _varint(code) if code else b""))
    else:
        status = _UNSET_STATUS
    return b"".join(
        (
            b"\x0a\x10" + trace_id.to_bytes(16, "big"),
            b"\x12\x08" + span_id.to_bytes(8, "big"),
            b"\x22\x08" + parent.to_bytes(8, "big") if parent is not None else b"",
            named,
            _KINDS[kind],
            b"\x39" + _pack_fixed64(start) if start else b"",
            b"\x41" + _pack_fixed64(end) if end else b"",
            _attributes(9, attributes),
            status,
            _REMOTE_PARENT if remote_parent else _LOCAL_PARENT,
        )
    )


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None  # a finished span has one
    if span.events or span.links or (context.trace_state and len(context.trace_state)):
        raise Unsupported("events, links or a trace state")
    if span.dropped_attributes or span.dropped_events or span.dropped_links:
        raise Unsupported("dropped attributes, events or links")
    parent = span.parent
    status = span.status
    return span_bytes(
        context.trace_id,
        context.span_id,
        None if parent is None else parent.span_id,
        span.name,
        span.kind,
        span.start_time,
        span.end_time,
        span.attributes,
        code=status.status_code.value,
        description=status.description,
        remote_parent=parent is not None and parent.is_remote,
    )


def span_field(data: bytes) -> bytes:
    """A ``Span`` message (`span_bytes`) as a field of its ``ScopeSpans`` (`request_around`)."""
    return _field(2, data)


class EncodedRequest:
    """An ``ExportTraceServiceRequest`` written already (`request_around`) that the exporters
    take as a batch of ``spans`` spans (they count it with ``len``, and their ``encode_spans``,
    once `install` ran, returns its bytes)."""

    __slots__ = ("data", "spans")

    def __init__(self, data: bytes, spans: int) -> None:
        self.data = data
        self.spans = spans

    def __len__(self) -> int:
        return self.spans


def request_around(
    resource: Resource, scope: InstrumentationScope | None, spans: Sequence[bytes]
) -> bytes:
    """The ``ExportTraceServiceRequest`` of ``spans`` (`span_field`s), all of ``resource`` and
    ``scope``: `request_bytes` for spans encoded one by one beforehand."""
    return _resource_spans(resource, {scope: list(spans)})


def _resource_spans(
    resource: Resource, scopes: Mapping[InstrumentationScope | None, list[bytes]]
) -> bytes:
    body = [_field(1, _attributes(1, resource.attributes))]
    for scope, encoded_spans in scopes.items():
        head = b""
        if scope is not None:
            head = _text(1, scope.name) + _text(2, scope.version)
            head += _attributes(3, scope.attributes)
        tail = _text(3, scope.schema_url) if scope is not None else b""
        body.append(_field(2, _field(1, head) + b"".join(encoded_spans) + tail))
    body.append(_text(3, resource.schema_url))
    return _field(1, b"".join(body))


def request_bytes(spans: Sequence[ReadableSpan] | EncodedRequest) -> bytes:
    """The ``ExportTraceServiceRequest`` of ``spans`` (a span it does not write itself, the
    library writes: see the module)."""
    if isinstance(spans, EncodedRequest):
        return spans.data
    # Grouped by resource and scope as the library groups them (by equality, in order of
    # appearance); a span's resource and scope are nearly always the same objects, and
    # hashing a Resource encodes its attributes as JSON: the groups are looked up by identity
    # first.
    groups: dict[Any, dict[Any, list[bytes]]] = {}
    by_id: dict[tuple[int, int], list[bytes]] = {}
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope or None
        try:
            encoded = _span(span)
        except Unsupported:  # the library writes this one
            encoded = _library_span(span)
        group = by_id.get((id(resource), id(scope)))
        if group is None:
            group = groups.setdefault(resource, {}).setdefault(scope, [])
            by_id[(id(resource), id(scope))] = group
        group.append(_field(2, encoded))
    return b"".join(_resource_spans(resource, scopes) for resource, scopes in groups.items())


def encode_spans(
    spans: Sequence[ReadableSpan] | EncodedRequest,
) -> ExportTraceServiceRequest:
    """The library's `encode_spans`, computed faster, that also takes an `EncodedRequest`."""
    request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(request_bytes(spans))
    return request


def _library_span(span: ReadableSpan) -> bytes:
    """The ``Span`` message of ``span`` as the library writes it."""
    (resource_spans,) = _library([span]).resource_spans
    (scope_spans,) = resource_spans.scope_spans
    (encoded,) = scope_spans.spans
    data: bytes = encoded.SerializeToString()
    return data


class SerializedRequest:
    """An ``ExportTraceServiceRequest`` already serialized: what the OTLP/HTTP exporter sends
    (it only calls ``SerializePartialToString``), without parsing it into a message first."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializePartialToString(self) -> bytes:  # protobuf's name
        return self.data

    SerializeToString = SerializePartialToString


def encode_spans_serialized(
    spans: Sequence[ReadableSpan] | EncodedRequest,
) -> SerializedRequest:
    """`encode_spans` for the OTLP/HTTP exporter (the request's bytes, not parsed)."""
    return SerializedRequest(request_bytes(spans))


#: What each exporter module's ``encode_spans`` becomes (gRPC's stub serializes a message).
_REPLACEMENTS: dict[str, Any] = {
    EXPORTERS[0]: encode_spans_serialized,
    EXPORTERS[1]: encode_spans,
}


def install() -> list[str]:
    """Make the OTLP exporter modules loaded so far encode with `encode_spans` (one not loaded
    is not loaded for this: gRPC costs startup time); the modules it changed."""
    changed = []
    for name in EXPORTERS:
        module = sys.modules.get(name)
        if module is None:
            continue
        replacement = _REPLACEMENTS[name]
        if getattr(module, "encode_spans", None) in (_library, replacement):
            module.encode_spans = replacement  # type: ignore[attr-defined]
            changed.append(name)
    return changed
