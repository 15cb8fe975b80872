"""The ``traceparent`` field: stamped first on what a traced handler sends, never the guest's.

A worker's `TraceContext` is the Python one or, with the C hot path, its C twin
(`caxton.runtime.sandbox._accel`): the tests of it run against both.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caxton.runtime.sandbox.accel import ACCEL
from caxton.runtime.tracing import decoded
from caxton.wire import trace
from caxton.wire.envelope import Incoming, Stamper

TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"
HANDLED = trace.with_traceparent(b'{"a":1}', trace.format_traceparent(TRACE, 7))
#: The trace context classes: Python's, and the C one when the extension is built.
CONTEXTS: list[Callable[[], trace.TraceContext]] = [trace.TraceContext]
if ACCEL is not None:
    CONTEXTS.append(ACCEL.TraceContext)


@pytest.fixture(params=CONTEXTS, ids=lambda cls: "c" if cls is not trace.TraceContext else "py")
def new_context(request: pytest.FixtureRequest) -> Callable[[], trace.TraceContext]:
    """Makes a fresh context of one implementation."""
    made: Callable[[], trace.TraceContext] = request.param
    return made


def context_of(
    message: bytes = HANDLED, new: Callable[[], trace.TraceContext] = trace.TraceContext
) -> trace.TraceContext:
    """A worker's context while it handles ``message``."""
    context = new()
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
def test_a_traced_handler_sends_with_a_new_span_of_its_trace(
    data: bytes, new_context: Callable[[], trace.TraceContext]
) -> None:
    context = context_of(HANDLED, new_context)
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
def test_a_traceparent_the_guest_writes_is_dropped(
    traced: bool, new_context: Callable[[], trace.TraceContext]
) -> None:
    forged = b'{"traceparent":"00-' + b"1" * 32 + b"-" + b"2" * 16 + b'-01",'
    data = forged + b'"receiver":"b","performative":"inform"}'
    context = context_of(HANDLED, new_context) if traced else None
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


@pytest.mark.parametrize(
    "message",
    [
        trace.with_traceparent(b'{"a":1}', "00-" + TRACE.decode() + "-" + "b" * 16 + "-00"),
        trace.with_traceparent(b'{"a":1}', "00-" + TRACE.decode()[:30] + "-" + "b" * 16 + "-01"),
        trace.with_traceparent(b'{"a":1}', "01-" + TRACE.decode() + "-" + "b" * 16 + "-01"),
        trace.with_traceparent(b"{}", "00-" + TRACE.decode() + "-" + "b" * 16 + "-01")[:-2],
        HANDLED[:72],
        b'{"message_id":"x","a":1}',
        b"",
    ],
    ids=["not-sampled", "short-trace", "version-01", "no-field-after", "cut", "untraced", "empty"],
)
def test_a_context_only_begins_on_a_sampled_context_where_the_runtime_writes_it(
    message: bytes, new_context: Callable[[], trace.TraceContext]
) -> None:
    context = context_of(HANDLED, new_context)
    assert context.active
    assert context.begin(message, "other") is None
    assert not context.active  # handled untraced: log lines do not carry the last trace


def test_a_context_begins_on_a_runtime_written_one(
    new_context: Callable[[], trace.TraceContext],
) -> None:
    context = new_context()
    assert not context.active
    span = context.begin(HANDLED, "agent")
    assert span is not None
    assert span == context.span_id
    assert context.active
    assert context.trace_id == TRACE
    assert context.open == HANDLED[: trace.TRACE_END + 1]
    assert (context.agent, context.message) == ("agent", HANDLED)
    assert context.guest() == b'{"a":1}'  # what the agent is given
    assert context.begin(bytearray(HANDLED), "agent") is not None  # any bytes-like message
    assert bytes(context.message) == HANDLED


def test_each_handling_records_only_its_own_sends(
    new_context: Callable[[], trace.TraceContext],
) -> None:
    context = context_of(HANDLED, new_context)
    first = context.stamp(b'{"receiver":"b"}')
    assert context.sends[2::3] == [b'{"receiver":"b"}']
    recorded = tuple(context.sends)
    second = context_of(first, new_context)  # the receiver's worker
    assert second.trace_id == TRACE
    context.begin(HANDLED, "agent")
    assert context.sends == []
    assert len(recorded) == 3  # what an earlier record holds is its own


def test_a_handling_s_record_has_its_times_outcome_and_sends(
    new_context: Callable[[], trace.TraceContext],
) -> None:
    context = context_of(HANDLED, new_context)
    span = context.span_id
    out = context.stamp(b'{"receiver":"b"}')
    context.finish()
    assert not context.active
    assert context.start <= context.end
    [sent, at, recorded] = context.sends
    assert isinstance(sent, int)
    assert isinstance(at, int)
    assert context.start <= at <= context.end
    record = decoded(context.record(3, "trap", 1234))
    assert record == ("handle", span, context.start, context.end, "agent", 3, HANDLED, "trap",
                      1234, sent, at, recorded)  # fmt: skip
    assert trace.trace_ids(out) == (TRACE, b"%016x" % sent)
    assert trace.parse(out) == (TRACE, b"%016x" % sent)


def test_span_ids_are_distinct_and_never_zero(
    new_context: Callable[[], trace.TraceContext],
) -> None:
    context = context_of(HANDLED, new_context)
    ids = {context.stamp(b"{}")[trace.TRACE_END + 1 : trace.SPAN_END] for _ in range(20_000)}
    ids |= {b"%016x" % (context.begin(HANDLED, "a") or 0) for _ in range(20_000)}
    assert len(ids) == 40_000
    assert b"0" * 16 not in ids
    other = context_of(HANDLED, new_context)  # another worker's context: its own ids
    assert other.span_id not in {context.span_id, *context.sends[::3]}


@pytest.mark.skipif(ACCEL is None, reason="the C extension is not built here")
@settings(max_examples=300, deadline=None)
@given(
    rest=st.binary(max_size=64),
    agent=st.text(max_size=8),
    outs=st.lists(st.binary(min_size=1, max_size=64), max_size=4),
)
def test_the_c_context_writes_what_the_python_one_writes(
    rest: bytes, agent: str, outs: list[bytes]
) -> None:
    assert ACCEL is not None
    python, c = trace.TraceContext(), ACCEL.TraceContext()
    for message in (HANDLED[: trace.FIELD_END] + rest, rest, HANDLED[: trace.FIELD_END - 1] + rest):
        python_span, c_span = python.begin(message, agent), c.begin(message, agent)
        assert (python_span is None) == (c_span is None)
        assert python.active == c.active
        if python_span is None:
            continue
        for out in outs:
            mine, theirs = python.stamp(out), c.stamp(out)
            ids = slice(trace.TRACE_END + 1, trace.SPAN_END)
            assert mine[: ids.start] + mine[ids.stop :] == theirs[: ids.start] + theirs[ids.stop :]
            assert int(theirs[ids], 16) == c.sends[-3]
        assert python.guest() == c.guest()
        assert (python.open, python.trace_id, python.message) == (c.open, c.trace_id, c.message)
        python.finish()
        c.finish()
        mine_record, theirs_record = python.record(1, "ok", None), decoded(c.record(1, "ok", None))
        assert len(mine_record) == len(theirs_record) == 9 + 3 * len(outs)
        assert mine_record[4:9] == theirs_record[4:9]
        assert mine_record[11::3] == theirs_record[11::3]  # what each send recorded


@pytest.mark.skipif(ACCEL is None, reason="the C extension is not built here")
@pytest.mark.parametrize(
    ("agent", "version", "outcome", "fuel"),
    [
        ("agent", 1, "ok", None),
        ("a" * 100, 1, "returned_error", 0),  # a name of 32-255 bytes
        ("agënt-" + "x" * 300, -(2**63), "trap", 2**63 - 1),  # long names, the int64 range
        ("agent", 2**64, "ok", None),  # beyond int64: the tuple
        ("agent", 1, "ok", [10]),  # not a plain value: the tuple
        ("agent", 1, "\ud800", None),  # not UTF-8: the tuple
    ],
)
def test_the_c_context_writes_its_record_as_the_msgpack_the_node_ships(
    agent: str, version: int, outcome: str, fuel: object
) -> None:
    assert ACCEL is not None
    python, c = context_of(HANDLED, trace.TraceContext), context_of(HANDLED, ACCEL.TraceContext)
    for context in (python, c):
        context.begin(HANDLED, agent)
        context.stamp(b'{"receiver":"b"}')
        context.stamp(b"{" + b'"x":"' + b"y" * 70_000 + b'"}')  # a bin32
        context.finish()
    record = c.record(version, outcome, fuel)  # type: ignore[arg-type]
    plain = all(isinstance(v, int) and -(2**63) <= v < 2**63 for v in (version, fuel or 0))
    assert isinstance(record, bytes) == (plain and outcome.isprintable())
    theirs, mine = decoded(record), python.record(version, outcome, fuel)  # type: ignore[arg-type]
    assert theirs[4:9] == mine[4:9]  # agent, version, message, outcome, fuel
    assert theirs[11::3] == mine[11::3]  # what each send recorded
    assert [type(v) for v in theirs] == [type(v) for v in mine]
