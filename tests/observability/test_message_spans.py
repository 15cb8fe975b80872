"""Spans of traced messages through a real runtime: context in messages, handle and send spans."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from caxton.config import ObservabilityConfig, RuntimeConfig
from caxton.observability import configure_logging
from caxton.observability.spans import SpanBuilder
from caxton.runtime import AgentSpec, Engine, Runtime
from caxton.runtime.sandbox.accel import ACCEL
from caxton.runtime.tracing import SpanLog
from tests.support import example, fast_runtime, wat

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@dataclass
class Traced:
    runtime: Runtime
    inbox: asyncio.Queue[bytes]
    builder: SpanBuilder
    exporter: InMemorySpanExporter

    def spans(self) -> list[ReadableSpan]:
        self.builder.drain()
        return list(self.exporter.get_finished_spans())


#: Both hot paths when the C extension is built: each has its own `TraceContext`.
FLAVOURS = ["c", "ctypes"] if ACCEL is not None else ["ctypes"]


@contextlib.asynccontextmanager
async def traced_runtime(config: RuntimeConfig, flavour: str = "c") -> AsyncIterator[Traced]:
    """A runtime with ``ping`` and ``pong`` whose traced work is built into in-memory spans;
    ``flavour``: the hot path ("c" whenever the extension is built)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    log = SpanLog()
    builder = SpanBuilder.for_provider(log, provider)
    engine = Engine(config, cache_dir=None, accelerated=flavour == "c" and ACCEL is not None)
    inbox: asyncio.Queue[bytes] = asyncio.Queue()
    runtime = Runtime(config, engine=engine, external=lambda r, d: inbox.put_nowait(d), spans=log)
    try:
        async with runtime:
            for name in ("pong", "ping"):
                await runtime.start_agent(AgentSpec(name=name), engine.compile(example(name)))
            yield Traced(runtime, inbox, builder, exporter)
    finally:
        engine.close()


@pytest.fixture(params=FLAVOURS)
async def traced(request: pytest.FixtureRequest) -> AsyncIterator[Traced]:
    async with traced_runtime(fast_runtime(), request.param) as ready:
        yield ready


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def start(rounds: int, traceparent: str | None) -> bytes:
    message: dict[str, object] = {
        "receiver": "ping",
        "sender": "client",
        "performative": "request",
        "conversation_id": "c-1",
        "content": {"op": "start", "peer": "pong", "n": rounds},
    }
    if traceparent is not None:
        message = {"traceparent": traceparent, **message}
    return json.dumps(message, separators=(",", ":")).encode()


async def test_one_trace_follows_the_messages_between_agents(traced: Traced) -> None:
    traced.runtime.deliver_nowait("ping", start(2, f"00-{TRACE}-{PARENT}-01"))
    done = await asyncio.wait_for(traced.inbox.get(), 10)
    # The message the handler sent carries the trace, first, with a new span id.
    assert done.startswith(f'{{"traceparent":"00-{TRACE}-'.encode())
    assert json.loads(done)["content"] == {"done": 2}

    spans = traced.spans()
    assert {format(s.context.trace_id, "032x") for s in spans} == {TRACE}
    handles = [s for s in spans if s.name == "caxton.handle"]
    sends = [s for s in spans if s.name == "caxton.send"]
    # ping: start + 2 informs; pong: 2 requests. Each handled message but the first was sent.
    assert [attrs(s)["caxton.agent.name"] for s in handles] == [
        "ping", "pong", "ping", "pong", "ping"
    ]  # fmt: skip
    assert len(sends) == 5  # 2 requests, 2 informs, the done message
    by_id = {s.context.span_id: s for s in spans}
    first = handles[0]
    assert first.parent is not None
    assert format(first.parent.span_id, "016x") == PARENT
    for handle in handles[1:]:  # each handling is a child of the send that queued it
        assert handle.parent is not None
        send = by_id[handle.parent.span_id]
        assert send.name == "caxton.send"
        assert attrs(send)["messaging.destination.name"] == attrs(handle)["caxton.agent.name"]
        assert send.parent is not None
        assert by_id[send.parent.span_id].name == "caxton.handle"
        assert attrs(handle)["caxton.queue_time_ms"] >= 0
    for handle in handles:
        attributes = attrs(handle)
        assert attributes["caxton.outcome"] == "ok"
        assert attributes["caxton.agent.version"] == 1
        assert attributes["messaging.message.conversation_id"] == "c-1"
        assert attributes["caxton.message.performative"] in ("request", "inform")
        assert handle.start_time is not None
        assert handle.end_time is not None
        assert handle.start_time <= handle.end_time
    last = sends[-1]
    assert format(last.context.span_id, "016x").encode() in done


async def test_a_message_without_context_is_not_traced(traced: Traced) -> None:
    traced.runtime.deliver_nowait("ping", start(3, None))
    done = await asyncio.wait_for(traced.inbox.get(), 10)
    assert b"traceparent" not in done
    assert traced.spans() == []


async def test_a_context_not_sampled_is_not_continued(traced: Traced) -> None:
    traced.runtime.deliver_nowait("ping", start(1, f"00-{TRACE}-{PARENT}-00"))
    done = await asyncio.wait_for(traced.inbox.get(), 10)
    assert b"traceparent" not in done
    assert traced.spans() == []


async def test_a_failed_handling_is_an_error_span(traced: Traced) -> None:
    # ping fails (caxton_handle returns 1) for a start without a sender to report to.
    bad = json.dumps(
        {"traceparent": f"00-{TRACE}-{PARENT}-01", "receiver": "ping",
         "performative": "request", "content": {"op": "start", "peer": "pong", "n": 1}},
        separators=(",", ":"),
    ).encode()  # fmt: skip
    traced.runtime.deliver_nowait("ping", bad)
    spans: list[ReadableSpan] = []
    for _ in range(200):
        spans = traced.spans()
        if spans:
            break
        await asyncio.sleep(0.02)
    [handle] = spans
    assert handle.name == "caxton.handle"
    assert attrs(handle)["caxton.outcome"] == "returned_error"
    assert not handle.status.is_ok


async def test_log_lines_written_while_handling_carry_the_trace(traced: Traced) -> None:
    stream = io.StringIO()
    setup = configure_logging(ObservabilityConfig(log_format="json"), stream=stream)
    try:
        traced.runtime.deliver_nowait("ping", start(1, f"00-{TRACE}-{PARENT}-01"))
        await asyncio.wait_for(traced.inbox.get(), 10)
        traced.runtime.deliver_nowait("ping", start(1, None))  # not traced: no ids
        await asyncio.wait_for(traced.inbox.get(), 10)
    finally:
        setup.close()
    handles = [s for s in traced.spans() if s.name == "caxton.handle"]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    # ping logs "ping: 1 rounds with pong" while it handles each start message.
    started = [line for line in lines if line["message"].startswith("ping: 1 rounds")]
    assert len(started) == 2
    traced_line, untraced_line = started
    assert traced_line["logger"] == "caxton.agent.ping"
    assert traced_line["trace_id"] == TRACE
    first = next(s for s in handles if attrs(s)["caxton.agent.name"] == "ping")
    assert traced_line["span_id"] == format(first.context.span_id, "016x")
    assert traced_line["agent"] == "ping"
    assert traced_line["conversation_id"] == "c-1"
    assert "trace_id" not in untraced_line
    assert "span_id" not in untraced_line


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_the_fuel_an_agent_used_is_on_its_span(flavour: str) -> None:
    async with traced_runtime(fast_runtime(fuel=50_000_000), flavour) as traced:
        traced.runtime.deliver_nowait("ping", start(2, f"00-{TRACE}-{PARENT}-01"))
        await asyncio.wait_for(traced.inbox.get(), 10)
    handles = [s for s in traced.spans() if s.name == "caxton.handle"]
    assert len(handles) == 5
    for handle in handles:
        used = attrs(handle)["caxton.fuel_used"]
        assert isinstance(used, int)
        assert 0 < used < 50_000_000


async def test_an_agent_never_sees_the_trace_context_it_is_handled_in(traced: Traced) -> None:
    runtime = traced.runtime
    engine = runtime.engine
    await runtime.start_agent(AgentSpec(name="echo"), engine.compile(wat("echo")))
    message = start(1, f"00-{TRACE}-{PARENT}-01").replace(
        b'"receiver":"ping"', b'"receiver":"echo"'
    )
    runtime.deliver_nowait("echo", message)
    reply = await asyncio.wait_for(traced.inbox.get(), 10)
    assert reply.startswith(b'{"traceparent":"00-' + TRACE.encode())  # the reply is traced
    seen = json.loads(reply)["content"]  # what echo was given, byte for byte
    assert "traceparent" not in seen
    assert seen == {k: v for k, v in json.loads(message).items() if k != "traceparent"}
    [handle] = [s for s in traced.spans() if s.name == "caxton.handle"]
    assert format(handle.parent.span_id, "016x") == PARENT  # type: ignore[union-attr]
