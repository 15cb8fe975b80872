"""Recording traced work on the hot path, for spans built off it (docs/observability.md).

The runtime and messaging never create OpenTelemetry spans themselves: for a message of a
sampled trace (`caxton.wire.trace`) they append a plain tuple to the node's `SpanLog`
(timestamps taken on the spot, in ``time.time_ns``); the node hands the records to its span
export process (`caxton.observability.span_process`), which turns them into spans with those
explicit ids and times and exports them. With tracing off there is no `SpanLog` and no
worker looks at a message's trace context at all; a message that carries none costs one
prefix compare.

Records:

* ``("handle", span_id, start, end, agent, version, message, outcome, fuel, *sends)``: an
  agent handled ``message`` (bytes, which starts with its ``traceparent``: the trace id and the
  parent span are read from it where the spans are built, `caxton.wire.trace.trace_ids`) in
  span ``span_id`` (an int) from ``start`` to ``end``; ``outcome`` is ``"ok"`` or the failure's
  cause, ``fuel`` what it used (None without metering); ``sends`` is the span id, time_ns and
  bytes of each message it sent, one after the other (`TraceContext.sends`).
* ``("span", name, trace_id, parent, span_id, start, end, attributes)``: any other step
  (``span_id`` None for a fresh one).

A record is that tuple, or (a ``handle`` record made by the C trace context,
`caxton.runtime.sandbox._accel`) the same tuple encoded as a msgpack array already: the form
the node ships its records in (`caxton.observability.span_process`), made where the values
are at hand instead of by a tuple, its integer objects and an encoding pass. `decoded` gives
the tuple of either form.

Records hold only plain values (bytes, str, int, dicts of str to str or numbers), never a
`TraceContext`, and are flat (no tuple per send): the garbage collector stops tracking such a
tuple the first time it sees it, so the records waiting to be shipped (a fifth of a second of
traced messages) do not make every collection of older objects longer (measured: a record
holding its `TraceContext` cost ping/pong at a sample rate of 0.1 about 8 % of its
throughput), and each traced message adds one object to track until then, not one per send.

`current` holds the calling worker thread's `TraceContext` (``active`` while it handles a traced
message), for log lines (`caxton.observability`'s formatters add its trace and span ids).
"""

from __future__ import annotations

import threading
from collections import deque
from time import time_ns
from typing import Any

import msgspec

from caxton.wire import trace as wire_trace

__all__ = ["SpanLog", "current", "decoded"]

#: Per thread: ``handling`` is the `TraceContext` of the worker running there (set once, when
#: its thread starts; absent elsewhere and with tracing off). While it is ``active``, the worker
#: handles a traced message (its trace, span, agent and message are the context's).
current = threading.local()


_decode_record = msgspec.msgpack.Decoder(tuple[Any, ...]).decode


def decoded(record: tuple[Any, ...] | bytes) -> tuple[Any, ...]:
    """A record as its tuple (one encoded as msgpack is decoded: see the module)."""
    return _decode_record(record) if isinstance(record, bytes) else record


class SpanLog:
    """Records of traced work (see the module); appended on any thread, drained by one."""

    __slots__ = ("dropped", "limit", "records")

    def __init__(self, limit: int = 200_000) -> None:
        #: The records not built into spans yet (``deque.append`` is thread-safe).
        self.records: deque[tuple[Any, ...] | bytes] = deque()
        #: At most this many wait; later ones are dropped (a stuck builder never eats memory).
        self.limit = limit
        #: Records dropped over `limit`.
        self.dropped = 0

    def add(self, record: tuple[Any, ...] | bytes) -> None:
        """Append one record (dropped and counted when `limit` are waiting)."""
        if len(self.records) < self.limit:
            self.records.append(record)
        else:
            self.dropped += 1

    def step(
        self,
        name: str,
        message: bytes,
        start: int,
        attributes: dict[str, Any],
        end: int | None = None,
    ) -> None:
        """Record a step named ``name`` on a traced ``message`` (child of its span)."""
        parsed = wire_trace.parse(message)
        if parsed is not None:
            trace_id, parent = parsed
            self.add(("span", name, trace_id, parent, None, start, end or time_ns(), attributes))

    def continued(self, name: str, message: bytes, out: bytes, attributes: dict[str, Any]) -> bytes:
        """``out`` (a message the runtime writes because of a traced ``message``, without a
        ``traceparent``) in a step named ``name``: the step is recorded as a child of
        ``message``'s span and ``out`` carries its context (so its handling continues the
        trace). ``out`` unchanged when ``message`` is not traced."""
        parsed = wire_trace.parse(message)
        if parsed is None:
            return out
        trace_id, parent = parsed
        span = wire_trace.new_span_id()
        now = time_ns()
        self.add(("span", name, trace_id, parent, span, now, now, attributes))
        return wire_trace.with_traceparent(out, wire_trace.format_traceparent(trace_id, span))
