"""A message sent through the API: its trace continues the client's ``traceparent`` (or starts
under ``trace_sample_rate``) through accept, commit, route and the agent's handling."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from caxton.api.app import create_app
from caxton.config import Config, CoordinationConfig
from caxton.node import Node
from caxton.observability.spans import SpanBuilder
from caxton.runtime.tracing import SpanLog
from tests.support import eventually, example, fast_runtime, wat

Client = TestClient[Any, Any]
TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


class Traced:
    def __init__(self, client: Client, builder: SpanBuilder, exporter: InMemorySpanExporter):
        self.client = client
        self.builder = builder
        self.exporter = exporter

    def spans(self) -> list[ReadableSpan]:
        self.builder.drain()
        return list(self.exporter.get_finished_spans())


MakeTraced = Callable[[float], Awaitable[Traced]]


@pytest.fixture
async def make_traced(tmp_path: Path) -> AsyncIterator[MakeTraced]:
    opened: list[tuple[Node, Client]] = []

    async def make(rate: float) -> Traced:
        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(rate)))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        config = Config(
            coordination=CoordinationConfig(local_state_path=tmp_path / f"n{len(opened)}.db"),
            runtime=fast_runtime(),
        )
        node = Node(config)
        node.spans = SpanLog()
        builder = SpanBuilder.for_provider(node.spans, provider)
        await node.start()
        client: Client = TestClient(
            TestServer(create_app(node, tracer=provider.get_tracer("test")))
        )
        await client.start_server()
        opened.append((node, client))
        wasm = base64.b64encode(example("echo")).decode()
        resp = await client.post("/api/v1/agents", json={"name": "echo", "wasm": wasm})
        assert resp.status == 201, await resp.text()
        return Traced(client, builder, exporter)

    yield make
    for node, client in reversed(opened):
        await client.close()
        await node.aclose()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def hexid(span_id: int) -> str:
    return format(span_id, "016x")


async def send(traced: Traced, **headers: str) -> dict[str, Any]:
    resp = await traced.client.post(
        "/api/v1/messages?wait=5s",
        json={"receiver": "echo", "performative": "request", "content": "hi"},
        headers=headers,
    )
    assert resp.status == 200, await resp.text()
    reply: dict[str, Any] = await resp.json()
    return reply


async def test_a_clients_traceparent_is_continued_to_the_agent(make_traced: MakeTraced) -> None:
    traced = await make_traced(0.0)  # the client's sampled decision wins over the rate
    reply = await send(traced, traceparent=f"00-{TRACE}-{CLIENT_SPAN}-01")
    assert reply["content"] == "hi"

    async def all_there() -> list[ReadableSpan] | None:
        spans = traced.spans()
        wanted = {"caxton.handle", "caxton.send", "caxton.route"}
        return spans if wanted <= {s.name for s in spans} else None

    spans = await eventually(all_there)
    assert {format(s.context.trace_id, "032x") for s in spans} == {TRACE}
    by_name = {s.name: s for s in spans}
    server = by_name["POST /api/v1/messages"]
    accept = by_name["caxton.accept"]
    assert server.parent is not None
    assert hexid(server.parent.span_id) == CLIENT_SPAN
    assert accept.parent is not None
    assert accept.parent.span_id == server.context.span_id
    for step in ("caxton.commit", "caxton.route", "caxton.handle"):
        parent = by_name[step].parent
        assert parent is not None
        assert parent.span_id == accept.context.span_id, step
    handle = by_name["caxton.handle"]
    assert attrs(handle)["caxton.agent.name"] == "echo"
    assert attrs(handle)["messaging.message.id"] == attrs(accept)["messaging.message.id"]
    assert attrs(handle)["messaging.message.conversation_id"] == reply["conversation_id"]
    assert attrs(handle)["caxton.queue_time_ms"] >= 0
    reply_send = by_name["caxton.send"]  # echo's answer to the client
    assert reply_send.parent is not None
    assert reply_send.parent.span_id == handle.context.span_id
    # The reply the client got carries the trace too (the send span's context).
    assert reply["traceparent"] == f"00-{TRACE}-{hexid(reply_send.context.span_id)}-01"


async def test_an_untraced_client_starts_a_trace_under_the_sample_rate(
    make_traced: MakeTraced,
) -> None:
    always = await make_traced(1.0)
    reply = await send(always)
    assert reply["traceparent"].startswith("00-")
    trace = reply["traceparent"].split("-")[1]

    async def handled() -> list[ReadableSpan] | None:
        spans = always.spans()
        return spans if "caxton.handle" in {s.name for s in spans} else None

    spans = [s for s in await eventually(handled) if format(s.context.trace_id, "032x") == trace]
    assert {"caxton.accept", "caxton.handle", "caxton.send"} <= {s.name for s in spans}
    roots = [s for s in spans if s.parent is None]
    assert [s.name for s in roots] == ["POST /api/v1/messages"]

    never = await make_traced(0.0)
    reply = await send(never)
    assert "traceparent" not in reply
    assert never.spans() == []
    # A client's context that is not sampled is honoured too.
    reply = await send(never, traceparent=f"00-{TRACE}-{CLIENT_SPAN}-00")
    assert "traceparent" not in reply


@pytest.mark.parametrize(
    "traceparent",
    [
        pytest.param(f"00-{'0' * 32}-{CLIENT_SPAN}-01", id="zero-trace"),
        pytest.param(f"00-{TRACE.upper()}-{CLIENT_SPAN}-01", id="upper-case"),
        pytest.param(f"00-{TRACE}-{CLIENT_SPAN}", id="no-flags"),
        pytest.param("garbage", id="garbage"),
    ],
)
async def test_a_malformed_traceparent_starts_a_new_trace(
    make_traced: MakeTraced, traceparent: str
) -> None:
    traced = await make_traced(1.0)
    reply = await send(traced, traceparent=traceparent)
    assert reply["traceparent"].startswith("00-")
    trace = reply["traceparent"].split("-")[1]
    assert trace != TRACE
    assert trace != "0" * 32


async def test_a_traceparent_in_the_body_is_the_runtimes_field(make_traced: MakeTraced) -> None:
    traced = await make_traced(0.0)
    resp = await traced.client.post(
        "/api/v1/messages?wait=5s",
        json={
            "receiver": "echo",
            "performative": "request",
            "content": "hi",
            "traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01",
        },
    )
    assert resp.status == 200, await resp.text()
    reply = await resp.json()
    assert "traceparent" not in reply  # replaced (removed: not sampled here), never continued
    assert traced.spans() == []


async def test_dead_letters_and_failure_replies_continue_the_trace(
    make_traced: MakeTraced,
) -> None:
    traced = await make_traced(0.0)
    resp = await traced.client.post(
        "/api/v1/messages?wait=5s",
        json={"receiver": "nobody", "performative": "request", "content": "hi"},
        headers={"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01"},
    )
    assert resp.status == 200, await resp.text()
    failure = await resp.json()
    assert failure["performative"] == "failure"

    async def both() -> dict[str, ReadableSpan] | None:
        by_name = {s.name: s for s in traced.spans()}
        wanted = {"caxton.dead_letter", "caxton.failure_reply"}
        return by_name if wanted <= set(by_name) else None

    by_name = await eventually(both)
    accept = by_name["caxton.accept"]
    dead = by_name["caxton.dead_letter"]
    reply = by_name["caxton.failure_reply"]
    assert dead.parent is not None
    assert dead.parent.span_id == accept.context.span_id
    assert attrs(dead)["caxton.reason"] == "unknown_receiver"
    assert attrs(dead)["messaging.destination.name"] == "nobody"
    assert reply.parent is not None
    assert reply.parent.span_id == accept.context.span_id
    # The failure the client got carries the failure reply's context.
    assert failure["traceparent"] == f"00-{TRACE}-{hexid(reply.context.span_id)}-01"


async def test_a_timer_fires_in_the_trace_it_was_set_in(make_traced: MakeTraced) -> None:
    traced = await make_traced(0.0)
    wasm = base64.b64encode(wat("later")).decode()
    resp = await traced.client.post("/api/v1/agents", json={"name": "later", "wasm": wasm})
    assert resp.status == 201, await resp.text()
    resp = await traced.client.post(
        "/api/v1/messages",
        json={"receiver": "later", "performative": "inform", "content": "tick"},
        headers={"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01"},
    )
    assert resp.status == 202, await resp.text()

    async def fired() -> list[ReadableSpan] | None:
        spans = traced.spans()
        handled = len([s for s in spans if s.name == "caxton.handle"])
        return spans if handled >= 2 and "caxton.timer" in {s.name for s in spans} else None

    spans = await eventually(fired, 5)
    by_id = {s.context.span_id: s for s in spans}
    assert {format(s.context.trace_id, "032x") for s in spans} >= {TRACE}
    first, second = [s for s in spans if s.name == "caxton.handle"][:2]
    assert second.parent is not None
    scheduled = by_id[second.parent.span_id]  # the message `schedule` stamped
    assert scheduled.name == "caxton.send"
    assert scheduled.parent is not None
    assert scheduled.parent.span_id == first.context.span_id
    timer = next(s for s in spans if s.name == "caxton.timer")
    assert timer.parent is not None
    assert timer.parent.span_id == scheduled.context.span_id
    assert attrs(second)["caxton.queue_time_ms"] >= 400  # it waited for its timer


async def test_a_traceparent_in_a_bulk_body_is_dropped_too(make_traced: MakeTraced) -> None:
    traced = await make_traced(1.0)
    forged = f"00-{TRACE}-{CLIENT_SPAN}-01"
    resp = await traced.client.post(
        "/api/v1/messages",
        json=[
            {"receiver": "echo", "performative": "inform", "content": 1, "traceparent": forged},
        ],
    )
    assert resp.status == 202, await resp.text()
    [accepted] = (await resp.json())["accepted"]

    async def stored() -> list[dict[str, Any]] | None:
        page = await traced.client.get(f"/api/v1/conversations/{accepted['conversation_id']}")
        if page.status != 200:
            return None
        messages: list[dict[str, Any]] = (await page.json())["messages"]
        return messages or None

    [message, *_] = await eventually(stored)
    # The runtime's own context (the request was sampled at 1.0), never the body's.
    assert TRACE not in message["traceparent"]
    (accept,) = [s for s in traced.spans() if s.name == "caxton.accept"]
    assert message["traceparent"] == (
        f"00-{format(accept.context.trace_id, '032x')}-{hexid(accept.context.span_id)}-01"
    )


async def test_a_bulk_request_is_one_accept_span_over_each_message_s_handling(
    make_traced: MakeTraced,
) -> None:
    traced = await make_traced(0.0)  # the client's sampled decision wins over the rate
    resp = await traced.client.post(
        "/api/v1/messages",
        json=[
            {"receiver": "echo", "performative": "inform", "content": n, "sender": "bulk"}
            for n in range(3)
        ],
        headers={"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01"},
    )
    assert resp.status == 202, await resp.text()
    ids = {a["message_id"] for a in (await resp.json())["accepted"]}

    async def handled() -> list[ReadableSpan] | None:
        spans = traced.spans()
        return spans if sum(s.name == "caxton.handle" for s in spans) == 3 else None

    spans = await eventually(handled)
    assert {format(s.context.trace_id, "032x") for s in spans} == {TRACE}
    (accept,) = [s for s in spans if s.name == "caxton.accept"]
    assert attrs(accept)["caxton.messages"] == 3
    handles = [s for s in spans if s.name == "caxton.handle"]
    assert {attrs(h)["messaging.message.id"] for h in handles} == ids
    for handle in handles:
        assert handle.parent is not None
        assert handle.parent.span_id == accept.context.span_id


async def test_an_untraced_bulk_request_carries_no_context(make_traced: MakeTraced) -> None:
    traced = await make_traced(0.0)
    resp = await traced.client.post(
        "/api/v1/messages",
        json=[{"receiver": "echo", "performative": "inform", "content": 1}],
    )
    assert resp.status == 202, await resp.text()
    [accepted] = (await resp.json())["accepted"]
    page = await traced.client.get(f"/api/v1/conversations/{accepted['conversation_id']}")
    [message, *_] = (await page.json())["messages"]
    assert "traceparent" not in message
    assert not [s for s in traced.spans() if s.name.startswith("caxton.")]
