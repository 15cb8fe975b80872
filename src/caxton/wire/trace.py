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

__all__ = [
    "HEAD",
    "TraceContext",
    "format_traceparent",
    "parse",
    "sampled_ids",
    "traced",
    "with_traceparent",
]

#: How every traced message starts.
HEAD = b'{"traceparent":"'
_HEAD_LEN = len(HEAD)
_PATTERN = re.compile(rb'00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})"')
_TEXT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


def sampled_ids(data: bytes) -> tuple[bytes, bytes] | None:
    """`parse` for a message that starts with `HEAD`, by position (the hot path's check).

    Only the runtime writes the field first (it drops one an agent or a client writes, and
    puts its own, validated, first), so the positions are known; the hex digits are checked
    where the spans are built.
    """
    if data[69:72] != b'01"' or data[18:19] != b"-" or data[51:52] != b"-":
        return None
    return data[19:51], data[52:68]


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
    """The trace of the message being handled, and what its handler sent (see the module)."""

    __slots__ = ("_open", "agent", "message", "sends", "span_id", "trace_id")

    def __init__(
        self, trace_id: bytes, span_id: int, agent: str = "", message: bytes = b""
    ) -> None:
        #: The agent handling `message` (for log lines: `caxton.runtime.tracing.current`).
        self.agent = agent
        self.message = message
        #: The trace (32 lowercase hex digits).
        self.trace_id = trace_id
        #: The span of the handling (the parent of each send span).
        self.span_id = span_id
        self._open = b'{"traceparent":"00-' + trace_id + b"-"
        #: ``(span id, time_ns, message)`` per message sent, in order.
        self.sends: list[tuple[int, int, bytes]] = []

    def stamp(self, out: bytes) -> bytes:
        """``out`` with a new send span's ``traceparent`` first; the send is recorded."""
        span = getrandbits(64) or 1
        self.sends.append((span, time_ns(), out))
        return b'%s%016x-01",%s' % (self._open, span, out[1:])
