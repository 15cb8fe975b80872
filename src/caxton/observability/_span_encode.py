"""The spans of a traced message's handling, written as OTLP bytes straight from its record.

`SpanBuilder` (in the span export process) turns each ``handle`` record into a
``caxton.handle`` span and a ``caxton.send`` span per message sent. Going through the general
encoder (`_otlp_encode.span_bytes` with attribute dicts) cost about 10 µs of Python per
record; the spans' shape never changes, so this module writes them with their constant parts
encoded once and their repeating attributes cached together: a message's conversation,
performative, sender and receiver as one cached run of fields, the handling agent's name,
version and outcome as another. The bytes are those of `_otlp_encode.span_bytes` for the same
span, attribute for attribute (tests/observability/test_otlp_encode.py compares the two with
the library's own encoding).
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec
from opentelemetry.trace import SpanKind, StatusCode

from caxton.observability._otlp_encode import (
    _KINDS,
    _LOCAL_PARENT,
    _UNSET_STATUS,
    Unsupported,
    _varint,
)

__all__ = [
    "HANDLE_KEYS",
    "MESSAGE_KEYS",
    "Fields",
    "destination",
    "fields_of",
    "handle_span",
    "message_attributes",
    "message_values",
    "send_span",
]

_pack_ids = struct.Struct(">2s16s2sQ2sQ").pack  # trace, span and parent ids, with their tags
_pack_times = struct.Struct("<cQcQ").pack  # start and end (fixed64), with their tags
_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_ERROR_STATUS = b"\x7a\x02\x18" + _varint(StatusCode.ERROR.value)
_TAIL_OK = _UNSET_STATUS + _LOCAL_PARENT
_TAIL_ERROR = _ERROR_STATUS + _LOCAL_PARENT
_T, _S, _P, _START, _END = b"\x0a\x10", b"\x12\x08", b"\x22\x08", b"\x39", b"\x41"
_DOUBLE = b"\x21"  # an AnyValue's double


def _name_and_kind(name: str, kind: SpanKind) -> bytes:
    encoded = name.encode()
    return b"\x2a" + _varint(len(encoded)) + encoded + _KINDS[kind]


_HANDLE = _name_and_kind("caxton.handle", SpanKind.CONSUMER)
_SEND = _name_and_kind("caxton.send", SpanKind.PRODUCER)


def _key(name: str) -> bytes:
    encoded = name.encode()
    return b"\x0a" + _varint(len(encoded)) + encoded


def _attribute(key: bytes, value: bytes) -> bytes:
    """A span's attribute field (``KeyValue``) of ``key`` (`_key`) and an ``AnyValue``."""
    pair = key + b"\x12" + _varint(len(value)) + value
    return b"\x4a" + _varint(len(pair)) + pair


def _text(key: bytes, value: str) -> bytes:
    """`_attribute` of a string value, written in one go (a message id per span)."""
    encoded = value.encode()
    n = len(encoded)
    if n >= _SHORT or len(key) >= _SHORT:
        return _attribute(key, b"\x0a" + _varint(n) + encoded)
    # Every length below fits one varint byte.
    return b"".join((_ONE[len(key) + n + 4], key, _TEXT_VALUE[n], encoded))


def _integer(key: bytes, value: int) -> bytes:
    if not -(1 << 63) <= value < 1 << 63:
        raise Unsupported("an integer out of the int64 range")
    return _attribute(key, b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF))


def _double(key: bytes, value: float) -> bytes:
    return _attribute(key, _DOUBLE + _pack_double(value))


def _times(start: int, end: int) -> bytes:
    """A span's start and end (a zero one is left out, as `span_bytes` does)."""
    if start and end:
        return _pack_times(_START, start, _END, end)
    return (_START + _pack_fixed64(start) if start else b"") + (
        _END + _pack_fixed64(end) if end else b""
    )


#: Below this, a text attribute's lengths are one varint byte each (``pair`` < 128 bytes).
_SHORT = 60
#: The field tag and the length of a ``KeyValue`` of n bytes; an ``AnyValue`` string's head.
_ONE = [b"\x4a" + bytes([n]) for n in range(128)]
_TEXT_VALUE = [b"\x12" + bytes([n + 2]) + b"\x0a" + bytes([n]) for n in range(_SHORT)]

#: A message's span attributes, in the order spans carry them (`message_values`).
MESSAGE_KEYS = (
    "messaging.message.id",
    "messaging.message.conversation_id",
    "caxton.message.performative",
    "caxton.message.sender",
    "messaging.destination.name",
)
#: A ``caxton.handle`` span's own attributes, in order, after its message's.
HANDLE_KEYS = (
    "caxton.agent.name",
    "caxton.agent.version",
    "caxton.outcome",
    "caxton.fuel_used",
    "caxton.queue_time_ms",
)
_MESSAGE_ID, _CONVERSATION, _PERFORMATIVE, _SENDER, _DESTINATION = map(_key, MESSAGE_KEYS)
_AGENT, _VERSION, _OUTCOME, _FUEL, _QUEUE_TIME = map(_key, HANDLE_KEYS)
_CACHED = 4096  # entries per cache below; each is cleared when full


class Fields(msgspec.Struct):
    """What spans read from a message (tolerant: wrong types are left out)."""

    message_id: Any = None
    conversation_id: Any = None
    performative: Any = None
    sender: Any = None
    receiver: Any = None
    created_at: Any = None


_decode = msgspec.json.Decoder(Fields).decode


def fields_of(data: bytes) -> Fields:
    """The `Fields` of a message (all None when it is not a JSON object)."""
    try:
        return _decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return Fields()


def destination(receiver: Any) -> str | None:
    """The ``messaging.destination.name`` of a message's receiver (a list: joined by commas)."""
    if isinstance(receiver, str):
        return receiver
    if isinstance(receiver, list):
        return ",".join(map(str, receiver))
    return None


def message_values(fields: Fields) -> tuple[Any, ...]:
    """The values of `MESSAGE_KEYS` in a message (a span carries those that are strings)."""
    return (fields.message_id, fields.conversation_id, fields.performative, fields.sender,
            destination(fields.receiver))  # fmt: skip


_shared: dict[tuple[Any, ...], bytes] = {}


def message_attributes(fields: Fields) -> bytes:
    """A message's span attributes, encoded: its id, conversation, performative, sender and
    destination (those that are strings, in that order)."""
    mid = fields.message_id
    head = _text(_MESSAGE_ID, mid) if type(mid) is str else b""
    receiver = fields.receiver
    shared_key = (fields.conversation_id, fields.performative, fields.sender,
                  receiver if type(receiver) is str else destination(receiver))  # fmt: skip
    shared = _shared.get(shared_key)
    if shared is None:
        conversation, performative, sender, to = shared_key
        shared = b"".join(
            _text(key, value)
            for key, value in (
                (_CONVERSATION, conversation),
                (_PERFORMATIVE, performative),
                (_SENDER, sender),
                (_DESTINATION, to),
            )
            if isinstance(value, str)
        )
        if len(_shared) >= _CACHED:
            _shared.clear()
        _shared[shared_key] = shared
    return head + shared


def _field(span: bytes) -> bytes:
    """A ``Span`` as a field of its ``ScopeSpans`` (`_otlp_encode.span_field`)."""
    return b"\x12" + _varint(len(span)) + span


def send_span(trace: bytes, span_id: int, parent: int, at: int, attributes: bytes) -> bytes:
    """The ``caxton.send`` span (a `_otlp_encode.span_field`) of a message sent at ``at``
    (ns), with its `message_attributes`; ``trace``: the trace id's 16 bytes."""
    return _field(
        b"".join(
            (
                _pack_ids(_T, trace, _S, span_id, _P, parent),
                _SEND,
                _times(at, at),
                attributes,
                _TAIL_OK,
            )
        )
    )


_handlers: dict[tuple[str, int, str], bytes] = {}


def handle_span(
    trace: bytes,
    span_id: int,
    parent: int,
    start: int,
    end: int,
    attributes: bytes,
    handler: tuple[str, int, str],
    fuel: int | None,
    queue_ms: float | None,
) -> bytes:
    """The ``caxton.handle`` span (a `_otlp_encode.span_field`): the handled message's
    `message_attributes`, then ``handler`` (agent name, version, outcome; an error span unless
    the outcome is ``ok``), the fuel used and the queue time, if known."""
    agent = _handlers.get(handler)
    if agent is None:
        name, version, outcome = handler
        agent = _text(_AGENT, name) + _integer(_VERSION, version) + _text(_OUTCOME, outcome)
        if len(_handlers) >= _CACHED:
            _handlers.clear()
        _handlers[handler] = agent
    return _field(
        b"".join(
            (
                _pack_ids(_T, trace, _S, span_id, _P, parent),
                _HANDLE,
                _times(start, end),
                attributes,
                agent,
                b"" if fuel is None else _integer(_FUEL, fuel),
                b"" if queue_ms is None else _double(_QUEUE_TIME, queue_ms),
                _TAIL_OK if handler[2] == "ok" else _TAIL_ERROR,
            )
        )
    )
