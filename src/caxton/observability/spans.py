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
from binascii import unhexlify
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from caxton._version import __version__
from caxton.errors import InvalidMessage
from caxton.observability._span_encode import (
    HANDLE_KEYS,
    MESSAGE_KEYS,
    Fields,
    fields_of,
    handle_span,
    message_attributes,
    message_values,
    send_span,
)
from caxton.runtime.tracing import SpanLog, decoded
from caxton.wire.codec import parse_reply_by
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


def _message_attributes(fields: Fields) -> dict[str, Any]:
    """`_span_encode.message_attributes`, as a dict."""
    pairs = zip(MESSAGE_KEYS, message_values(fields), strict=True)
    return {key: value for key, value in pairs if isinstance(value, str)}


def _created_ns(fields: Fields) -> int | None:
    """When a message was created (ns, to the ms its ``created_at`` has), if it says."""
    if not isinstance(fields.created_at, str):
        return None
    try:
        return int(parse_reply_by(fields.created_at) * 1e9)
    except InvalidMessage:
        return None


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
        self._handle = self._handle_readable
        if encoded is not None:
            from caxton.observability import _otlp_encode

            self._span_bytes = _otlp_encode.span_bytes
            self._span_field = _otlp_encode.span_field
            self._unsupported = _otlp_encode.Unsupported
            self._handle = self._handle_encoded
        self._scope = SCOPE
        #: Per send span id (recent ones): its time and its message's attributes (a dict, or
        #: encoded when spans are: `_span_encode.message_attributes`), for the receiver's span.
        self._sent: OrderedDict[int, tuple[int, Any]] = OrderedDict()
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

    def _build(self, record: tuple[Any, ...] | bytes) -> int:
        record = decoded(record)
        if record[0] == "handle":
            return self._handle(record)
        _, name, trace_id, parent, span_id, start, end, attributes = record
        self._end(name, int(trace_id, 16), int(parent, 16), span_id or new_span_id(),
                  start, end, attributes)  # fmt: skip
        return 1

    def _handle_encoded(self, record: tuple[Any, ...]) -> int:
        """`_handle_readable`'s spans, written as OTLP bytes (`_span_encode`)."""
        _, span_id, start, end, agent, version, data, outcome, fuel, *sends = record
        trace_hex, parent = trace_ids(data)
        trace = unhexlify(trace_hex)
        parent_id = int(parent, 16)
        if len(trace) != 16:
            raise ValueError("a trace id that is not 32 hex digits")
        # The message's send span was built here (its sender's record came first): its time is
        # the queue time's start, and its message attributes are this span's too.
        sent = self._sent.pop(parent_id, None)
        if sent is None:
            fields = fields_of(data)
            queued, attributes = _created_ns(fields), message_attributes(fields)
        else:
            queued, attributes = sent
        out = self._out
        try:
            out.append(
                handle_span(trace, span_id, parent_id, start, end, attributes,
                            (agent, version, outcome), fuel,
                            None if queued is None else max(0.0, (start - queued) / 1e6))
            )  # fmt: skip
        except self._unsupported:  # (an attribute it does not write): as a ReadableSpan
            self._end_handle(data, int(trace_hex, 16), parent_id, span_id, start, end, agent,
                             version, outcome, fuel, queued)  # fmt: skip
        remembered = self._sent
        flat = iter(sends)  # span id, time, bytes per send
        for send_id, at, message in zip(flat, flat, flat, strict=True):
            attributes = message_attributes(fields_of(message))
            out.append(send_span(trace, send_id, span_id, at, attributes))
            remembered[send_id] = (at, attributes)
        while len(remembered) > _REMEMBERED:
            remembered.popitem(last=False)
        return 1 + len(sends) // 3

    def _handle_readable(self, record: tuple[Any, ...]) -> int:
        """A ``handle`` record's spans (`caxton.runtime.tracing`): ``caxton.handle``, then a
        ``caxton.send`` per message its handler sent."""
        _, span_id, start, end, agent, version, data, outcome, fuel, *sends = record
        trace_hex, parent = trace_ids(data)
        trace_id = int(trace_hex, 16)
        parent_id = int(parent, 16)
        sent = self._sent.pop(parent_id, None)
        queued, message = (None, None) if sent is None else sent
        self._end_handle(data, trace_id, parent_id, span_id, start, end, agent, version, outcome,
                         fuel, queued, message)  # fmt: skip
        remembered = self._sent
        flat = iter(sends)  # span id, time, bytes per send
        for send_id, at, out in zip(flat, flat, flat, strict=True):
            message = _message_attributes(fields_of(out))
            self._end("caxton.send", trace_id, span_id, send_id, at, at, {}, SpanKind.PRODUCER,
                      message=message)  # fmt: skip
            remembered[send_id] = (at, message)
        while len(remembered) > _REMEMBERED:
            remembered.popitem(last=False)
        return 1 + len(sends) // 3

    def _end_handle(
        self,
        data: bytes,
        trace_id: int,
        parent_id: int,
        span_id: int,
        start: int,
        end: int,
        agent: str,
        version: int,
        outcome: str,
        fuel: int | None,
        queued: int | None,
        message: dict[str, Any] | None = None,
    ) -> None:
        """End a ``caxton.handle`` span as a `ReadableSpan` (``message``: the handled message's
        attributes, when its send span gave them)."""
        if message is None:
            fields = fields_of(data)
            message = _message_attributes(fields)
            if queued is None:
                queued = _created_ns(fields)
        queue_ms = None if queued is None else max(0.0, (start - queued) / 1e6)
        pairs = zip(HANDLE_KEYS, (agent, version, outcome, fuel, queue_ms), strict=True)
        attributes = {key: value for key, value in pairs if value is not None}
        self._end("caxton.handle", trace_id, parent_id, span_id, start, end, attributes,
                  SpanKind.CONSUMER, failed=outcome != "ok", message=message,
                  readable=True)  # fmt: skip

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
        readable: bool = False,
    ) -> None:
        """End a span; its attributes are ``message``'s (a message's, `_message_attributes`)
        then ``attributes``. Encoded when spans are (unless ``readable``: the encoder could
        not write it), else handed to the processor as a `ReadableSpan`."""
        if message:
            attributes = {**message, **attributes}
        if self._encoded is not None and not readable:
            try:
                data = self._span_bytes(
                    trace_id, span_id, parent, name, kind, start, end, attributes,
                    code=StatusCode.ERROR.value if failed else 0,
                )  # fmt: skip
            except self._unsupported:
                pass  # (an attribute it does not write): as a ReadableSpan
            else:
                self._out.append(self._span_field(data))
                return
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
