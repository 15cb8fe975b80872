"""W3C trace context inside messages: the runtime's ``traceparent`` field (docs/messaging.md).

A message that belongs to a sampled trace starts with ``{"traceparent":"00-<trace id>-<span
id>-01",`` (the field is always first, so telling a traced message from another costs one
prefix compare: `traced`). Only sampled traces are carried: a message without the field is not
traced, and nothing sent while handling it is either (the decision was made where its
conversation entered the runtime).

`TraceContext` is the trace of the message a worker is handling: each message the handler
sends gets a fresh span id (its ``send`` span, the parent of the receiver's span) and is
recorded for the span builder. Nothing here creates spans or imports OpenTelemetry: the
records are plain tuples, turned into spans off the hot path (`caxton.runtime.tracing`).
"""

from __future__ import annotations

import re
from random import getrandbits
from time import time_ns
from typing import Any

__all__ = [
    "HEAD",
    "TRACE_LAYOUT",
    "TraceContext",
    "format_traceparent",
    "parse",
    "trace_ids",
    "traced",
    "with_traceparent",
]

#: How every traced message starts.
HEAD = b'{"traceparent":"'
_HEAD_LEN = len(HEAD)
#: Where a traced message's trace id starts and ends, where its parent span id ends
#: (`trace_ids`), and where the whole field ends, its comma included (`TraceContext.begin`).
TRACE_START = _HEAD_LEN + 3
TRACE_END = TRACE_START + 32
SPAN_END = TRACE_END + 1 + 16
FIELD_END = SPAN_END + 5
_OPEN = HEAD + b"00-"  # up to the trace id
_TAIL = b'-01",'  # after the span id: sampled, and another field follows
#: The layout above, as `caxton.runtime.sandbox._accel` (the C `TraceContext`) must share it.
TRACE_LAYOUT = (_OPEN, TRACE_START, TRACE_END, SPAN_END, FIELD_END)
_PATTERN = re.compile(rb'00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})"')
_TEXT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


def trace_ids(data: bytes) -> tuple[bytes, bytes]:
    """``(trace id, parent span id)`` of a message `TraceContext.begin` accepted, by position
    (their hex digits are checked where spans are built)."""
    return data[TRACE_START:TRACE_END], data[TRACE_END + 1 : SPAN_END]


def traced(data: bytes) -> bool:
    """Whether a message carries a trace context (it starts with the field)."""
    return data[:_HEAD_LEN] == HEAD


def parse(data: bytes | str) -> tuple[bytes, bytes] | None:
    """``(trace id, parent span id)`` (lowercase hex) of a sampled context, else None.

    ``data`` is a message (its leading field is read) or a ``traceparent`` value. Contexts that
    are not sampled, malformed or all-zero give None.
    """
    if isinstance(data, str):
        match = _TEXT.fullmatch(data.strip())
        if match is None:
            return None
        trace, span, flags = (part.encode() for part in match.groups())
    else:
        if data[:_HEAD_LEN] != HEAD:
            return None
        found = _PATTERN.match(data, _HEAD_LEN)
        if found is None:
            return None
        trace, span, flags = found.groups()
    if not int(flags, 16) & 1 or trace == _ZERO_TRACE or span == _ZERO_SPAN:
        return None
    return trace, span


def format_traceparent(trace_id: bytes, span_id: int) -> str:
    """The ``traceparent`` value of a sampled span."""
    return f"00-{trace_id.decode()}-{span_id:016x}-01"


def with_traceparent(data: bytes, traceparent: str) -> bytes:
    """``data`` (a JSON object without the field) with ``traceparent`` as its first field."""
    return b'{"traceparent":"%s",%s' % (traceparent.encode(), data[1:])


def new_span_id() -> int:
    """A random non-zero 64-bit span id."""
    return getrandbits(64) or 1


class TraceContext:
    """The trace of the message a worker is handling, and what its handler sent (see the
    module). One per worker, reused: `begin` starts each traced message's handling, `finish`
    ends it, `record` is its record for the span builder (`caxton.runtime.tracing`).

    `caxton.runtime.sandbox._accel.TraceContext` is its C twin (same attributes and results),
    used with the C hot path."""

    __slots__ = ("active", "agent", "end", "message", "open", "sends", "span_id", "start")

    def __init__(self) -> None:
        #: The agent handling `message` (for log lines: `caxton.runtime.tracing.current`).
        self.agent = ""
        self.message = b""
        #: ``{"traceparent":"00-<trace id>-``: how every message stamped meanwhile starts.
        self.open = b""
        #: The span of the handling (the parent of each send span).
        self.span_id = 0
        #: Per message sent, in order, its span id, time (ns) and bytes, one after the other
        #: (flat: a record holds them with no tuple per send; `begin` empties it).
        self.sends: list[int | bytes] = []
        #: Between `begin` (of a traced message) and `finish`.
        self.active = False
        #: When the handling began and ended (ns since the epoch, as ``time.time_ns``).
        self.start = self.end = 0

    def begin(self, message: bytes, agent: str) -> int | None:
        """Start handling ``message`` for ``agent``; the new span id of its handling, or None
        when it does not start with a sampled context as the runtime writes it (version 00,
        followed by another field): it is then handled untraced."""
        self.active = False
        if message[:TRACE_START] != _OPEN or message[SPAN_END:FIELD_END] != _TAIL:
            return None
        self.open = message[: TRACE_END + 1]
        self.message = message
        self.agent = agent
        if self.sends:
            self.sends.clear()  # (the previous record holds a copy)
        span = self.span_id = getrandbits(64) or 1
        self.active = True
        self.start = time_ns()
        return span

    @property
    def trace_id(self) -> bytes:
        """The trace (32 lowercase hex digits)."""
        return self.open[TRACE_START:TRACE_END]

    def stamp(self, out: bytes) -> bytes:
        """``out`` with a new send span's ``traceparent`` first; the send is recorded."""
        span = getrandbits(64) or 1
        self.sends.extend((span, time_ns(), out))
        return b'%s%016x-01",%s' % (self.open, span, out[1:])

    def guest(self) -> bytes:
        """The message without the runtime's field: what the agent is given."""
        return b"{" + self.message[FIELD_END:]

    def finish(self) -> None:
        """The handling ended (now)."""
        self.end = time_ns()
        self.active = False

    def record(self, version: int, outcome: str, fuel: int | None) -> tuple[Any, ...]:
        """The handling's ``handle`` record (`caxton.runtime.tracing`), after `finish`."""
        return ("handle", self.span_id, self.start, self.end, self.agent, version,
                self.message, outcome, fuel, *self.sends)  # fmt: skip
