"""The ``traceparent`` field: stamped first on what a traced handler sends, never the guest's."""

from __future__ import annotations

import json

import pytest

from caxton.wire import trace
from caxton.wire.envelope import Incoming, Stamper

TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"
HANDLED = trace.with_traceparent(b'{"a":1}', trace.format_traceparent(TRACE, 7))


def context_of(message: bytes = HANDLED) -> trace.TraceContext:
    """A worker's context while it handles ``message``."""
    context = trace.TraceContext()
    assert context.begin(message, "agent") is not None
    return context


def stamp(data: bytes, context: trace.TraceContext | None) -> bytes:
    stamper = Stamper()
    stamper.trace = context
    incoming = Incoming(b'{"sender":"client","conversation_id":"c"}')
    _, out = stamper.stamp(data, b'"agent"', incoming, "agent")
    return out


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'{"receiver":"b","performative":"inform"}', id="fast"),
        pytest.param(b'{"receiver":["b","c"],"performative":"inform"}', id="general"),
        pytest.param(b'{"receiver":"b","performative":"Inform","sender":"x"}', id="slow"),
    ],
)
def test_a_traced_handler_sends_with_a_new_span_of_its_trace(data: bytes) -> None:
    context = context_of()
    out = stamp(data, context)
    assert out.startswith(trace.HEAD + b"00-" + TRACE + b"-")
    [span, _, recorded] = context.sends
    assert isinstance(span, int)
    assert isinstance(recorded, bytes)
    assert trace.parse(out) == (TRACE, b"%016x" % span)
    assert trace.trace_ids(out) == (TRACE, b"%016x" % span)
    message = json.loads(out)
    assert message["sender"] == "agent"
    assert message["conversation_id"] == "c"
    assert json.loads(recorded)["message_id"] == message["message_id"]


@pytest.mark.parametrize("traced", [False, True])
def test_a_traceparent_the_guest_writes_is_dropped(traced: bool) -> None:
    forged = b'{"traceparent":"00-' + b"1" * 32 + b"-" + b"2" * 16 + b'-01",'
    data = forged + b'"receiver":"b","performative":"inform"}'
    context = context_of() if traced else None
    out = stamp(data, context)
    assert b"1" * 32 not in out
    assert out.count(b"traceparent") == (1 if traced else 0)


def test_untraced_handlers_send_no_context() -> None:
    out = stamp(b'{"receiver":"b","performative":"inform"}', None)
    assert not trace.traced(out)
    assert b"traceparent" not in out


@pytest.mark.parametrize(
    "value",
    [
        "00-" + "a" * 32 + "-" + "b" * 16 + "-00",  # not sampled
        "00-" + "0" * 32 + "-" + "b" * 16 + "-01",  # zero trace id
        "00-" + "a" * 32 + "-" + "0" * 16 + "-01",  # zero span id
        "01-" + "a" * 32 + "-" + "b" * 16 + "-01",  # unknown version
        "00-" + "A" * 32 + "-" + "b" * 16 + "-01",  # upper case
        "garbage",
    ],
)
def test_only_sampled_well_formed_contexts_parse(value: str) -> None:
    assert trace.parse(value) is None
    assert trace.parse(trace.with_traceparent(b'{"a":1}', value)) is None


def test_a_sampled_context_round_trips() -> None:
    value = trace.format_traceparent(TRACE, 0xB7AD6B7169203331)
    assert value == "00-" + TRACE.decode() + "-b7ad6b7169203331-01"
    assert trace.parse(value) == (TRACE, b"b7ad6b7169203331")
    message = trace.with_traceparent(b'{"a":1}', value)
    assert json.loads(message) == {"traceparent": value, "a": 1}
    assert trace.trace_ids(message) == (TRACE, b"b7ad6b7169203331")


def test_a_context_only_begins_on_a_sampled_context_where_the_runtime_writes_it() -> None:
    context = trace.TraceContext()
    unsampled = trace.with_traceparent(b'{"a":1}', "00-" + TRACE.decode() + "-" + "b" * 16 + "-00")
    assert context.begin(unsampled, "agent") is None
    short = trace.with_traceparent(b'{"a":1}', "00-" + TRACE.decode()[:30] + "-" + "b" * 16 + "-01")
    assert context.begin(short, "agent") is None
    span = context.begin(HANDLED, "agent")
    assert span is not None
    assert span == context.span_id
    assert context.trace_id == TRACE
    assert (context.agent, context.message) == ("agent", HANDLED)


def test_each_handling_records_only_its_own_sends() -> None:
    context = context_of()
    first = context.stamp(b'{"receiver":"b"}')
    assert context.sends[2::3] == [b'{"receiver":"b"}']
    recorded = tuple(context.sends)
    second = context_of(first)  # the receiver's worker
    assert second.trace_id == TRACE
    context.begin(HANDLED, "agent")
    assert context.sends == []
    assert len(recorded) == 3  # what an earlier record holds is its own
