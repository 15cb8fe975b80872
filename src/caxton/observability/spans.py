"""`SpanBuilder`: the spans of traced messages, built off the hot path (docs/observability.md).

The runtime and messaging record traced work as plain tuples in a `SpanLog`
(`caxton.runtime.tracing`); `SpanBuilder.drain` turns them into finished spans, with the
recorded ids and times, and hands them to a span processor (in a node, the one of the span
export process: `caxton.observability.span_process`; in tests, any). Sampling was decided
where the trace entered the node (`caxton.wire.trace`): every record is of a sampled trace.

Spans built here:

* ``caxton.handle`` (CONSUMER): an agent handling a message; attributes: agent name and
  version, performative, conversation and message ids, sender, outcome (``ok`` or the
  failure's cause), fuel used (with metering), queue time in the mailbox;
* ``caxton.send`` (PRODUCER, child of ``caxton.handle``): each message the handler sent
  (receiver, performative, message id); its span id is the ``traceparent`` the message carries,
  so the receiver's ``caxton.handle`` is its child;
* any other recorded step (``caxton.commit``, ``caxton.route``, ``caxton.dead_letter``, ...).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from caxton._version import __version__
from caxton.errors import InvalidMessage
from caxton.runtime.tracing import SpanLog
from caxton.wire.codec import parse_reply_by
from caxton.wire.header import Header
from caxton.wire.trace import new_span_id, trace_ids

__all__ = ["SpanBuilder"]

#: The instrumentation scope of every span built here.
SCOPE = InstrumentationScope("caxton", __version__)
#: Send spans remembered for the receiver's span (its queue time and message attributes); one
#: not remembered any more gets the queue time from the message's ``created_at`` (to the ms).
_REMEMBERED = 16_384
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_ERROR = Status(StatusCode.ERROR)
_log = logging.getLogger("caxton.observability.spans")


class _Fields(Header):
    """The router's header fields, and ``created_at`` (for the queue time)."""

    created_at: Any = None


_decode = msgspec.json.Decoder(_Fields).decode


def _fields(data: bytes) -> _Fields:
    try:
        return _decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _Fields()


def _message_attributes(fields: _Fields) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for key, value in (
        ("messaging.message.id", fields.message_id),
        ("messaging.message.conversation_id", fields.conversation_id),
        ("caxton.message.performative", fields.performative),
        ("caxton.message.sender", fields.sender),
    ):
        if isinstance(value, str):
            attributes[key] = value
    receiver = fields.receiver
    if isinstance(receiver, str):
        attributes["messaging.destination.name"] = receiver
    elif isinstance(receiver, list):
        attributes["messaging.destination.name"] = ",".join(map(str, receiver))
    return attributes


def processor_of(provider: TracerProvider) -> SpanProcessor:
    """The provider's span processor (every processor added to it, as one)."""
    processor: SpanProcessor = provider._active_span_processor  # no public accessor
    return processor


class SpanBuilder:
    """Builds the spans of a `SpanLog` (see the module); `drain` from any one thread."""

    def __init__(
        self,
        log: SpanLog,
        processor: SpanProcessor,
        resource: Resource | None = None,
        *,
        encoded: Callable[[list[bytes]], None] | None = None,
    ) -> None:
        """``encoded``: give it each `drain`'s spans encoded for OTLP already (a list of
        `_otlp_encode.span_field`, all of ``resource`` and `SCOPE`; in the span export
        process, `SpanBatches.put`) instead of handing ``processor`` a `ReadableSpan` per span
        (about a third of the work per span); a span the encoder does not write still goes to
        ``processor``."""
        self.log = log
        self._processor = processor
        self._resource = resource
        self._encoded = encoded
        self._out: list[bytes] = []
        if encoded is not None:
            from caxton.observability import _otlp_encode

            self._span_bytes = _otlp_encode.span_bytes
            self._span_field = _otlp_encode.span_field
            self._attribute_fields = _otlp_encode.attribute_fields
            self._unsupported = _otlp_encode.Unsupported
        self._scope = SCOPE
        #: Per send span id (recent ones): its time, its message's attributes and their
        #: encoding (None unless spans are encoded), for the receiver's span.
        self._sent: OrderedDict[int, tuple[int, dict[str, Any], bytes | None]] = OrderedDict()
        self._lock = threading.Lock()
        #: Records dropped because their ids were not hexadecimal.
        self.malformed = 0

    @classmethod
    def for_provider(cls, log: SpanLog, provider: TracerProvider) -> SpanBuilder:
        """A builder feeding ``provider``'s processors."""
        return cls(log, processor_of(provider), provider.resource)

    def drain(self) -> int:
        """Build every waiting record into spans now; the number of spans ended."""
        records = self.log.records
        ended = 0
        with self._lock:
            while records:
                record = records.popleft()
                try:
                    ended += self._build(record)
                except ValueError:  # ids that are not hex: only a bug could write them
                    self.malformed += 1
                except Exception:  # a malformed record must not stop the others
                    _log.exception("building a span failed")
            out = self._out
            if out:
                self._out = []
                assert self._encoded is not None
                self._encoded(out)
        return ended

    def _build(self, record: tuple[Any, ...]) -> int:
        if record[0] == "handle":
            return self._handle(*record[1:])
        _, name, trace_id, parent, span_id, start, end, attributes = record
        self._end(name, int(trace_id, 16), int(parent, 16), span_id or new_span_id(),
                  start, end, attributes)  # fmt: skip
        return 1

    def _handle(
        self,
        span_id: int,
        start: int,
        end: int,
        agent: str,
        version: int,
        data: bytes,
        outcome: str,
        fuel: int | None,
        *sends: Any,
    ) -> int:
        trace_hex, parent = trace_ids(data)
        trace_id = int(trace_hex, 16)
        parent_id = int(parent, 16)
        # The message's send span was built here (its sender's record came first): its time is
        # the queue time's start, and its message attributes are this span's too.
        sent = self._sent.pop(parent_id, None)
        if sent is None:
            fields = _fields(data)
            message = _message_attributes(fields)
            encoded = None
            queued = None
            if isinstance(fields.created_at, str):
                try:
                    queued = int(parse_reply_by(fields.created_at) * 1e9)
                except InvalidMessage:
                    queued = None
        else:
            queued, message, encoded = sent
        attributes: dict[str, Any] = {
            "caxton.agent.name": agent,
            "caxton.agent.version": version,
            "caxton.outcome": outcome,
        }
        if fuel is not None:
            attributes["caxton.fuel_used"] = fuel
        if queued is not None:
            attributes["caxton.queue_time_ms"] = max(0.0, (start - queued) / 1e6)
        self._end("caxton.handle", trace_id, parent_id, span_id, start, end, attributes,
                  SpanKind.CONSUMER, failed=outcome != "ok", message=message,
                  encoded=encoded)  # fmt: skip
        remembered = self._sent
        flat = iter(sends)  # span id, time, bytes per send
        for send_id, at, out in zip(flat, flat, flat, strict=True):
            message = _message_attributes(_fields(out))
            encoded = self._end("caxton.send", trace_id, span_id, send_id, at, at, {},
                                SpanKind.PRODUCER, message=message)  # fmt: skip
            remembered[send_id] = (at, message, encoded)
        while len(remembered) > _REMEMBERED:
            remembered.popitem(last=False)
        return 1 + len(sends) // 3

    def _end(
        self,
        name: str,
        trace_id: int,
        parent: int,
        span_id: int,
        start: int,
        end: int,
        attributes: dict[str, Any],
        kind: SpanKind = SpanKind.INTERNAL,
        *,
        failed: bool = False,
        message: dict[str, Any] | None = None,
        encoded: bytes | None = None,
    ) -> bytes | None:
        """End a span; its attributes are ``message``'s (a message's, `_message_attributes`)
        then ``attributes``. ``encoded``: ``message`` encoded already (what an earlier call
        returned for it). Returns ``message`` encoded (when spans are encoded), else None."""
        if self._encoded is not None:
            try:
                if message and encoded is None:
                    encoded = self._attribute_fields(message)
                data = self._span_bytes(
                    trace_id, span_id, parent, name, kind, start, end, attributes,
                    code=StatusCode.ERROR.value if failed else 0, leading=encoded or b"",
                )  # fmt: skip
            except self._unsupported:
                pass  # (an attribute it does not write): as a ReadableSpan
            else:
                self._out.append(self._span_field(data))
                return encoded
        if message:
            attributes = {**message, **attributes}
        span = ReadableSpan(
            name,
            context=SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED),
            parent=SpanContext(trace_id, parent, is_remote=False, trace_flags=_SAMPLED),
            resource=self._resource,
            attributes=attributes,
            kind=kind,
            status=_ERROR if failed else Status(StatusCode.UNSET),
            start_time=start,
            end_time=end,
            instrumentation_scope=self._scope,
        )
        self._processor.on_end(span)
        return None
