"""The C SDK's one-pass envelope reader (`caxton_message_read`) against `caxton_json_field`.

A real agent (``tests/runtime/agents/fields.c``, built with clang) reads each message with
both readers and reports the raw values; messages are delivered as raw bytes, so the JSON can
be shaped the way a hand-written or foreign sender would shape it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caxton.config.schema import RuntimeConfig
from caxton.runtime import AgentSpec, Engine, Runtime
from tests.messaging.conftest import build_c

SOURCE = Path(__file__).parent / "agents" / "fields.c"
FIELDS = (
    "sender",
    "receiver",
    "performative",
    "content",
    "conversation_id",
    "reply_with",
    "in_reply_to",
    "message_id",
)


class Reader:
    def __init__(self, runtime: Runtime, inbox: asyncio.Queue[bytes]) -> None:
        self.runtime = runtime
        self.inbox = inbox

    async def read(self, raw: bytes) -> dict[str, Any]:
        self.runtime.deliver_nowait("fields", raw)
        report = json.loads(await asyncio.wait_for(self.inbox.get(), 10))
        content: dict[str, Any] = report["content"]
        return content


@pytest.fixture
async def reader() -> AsyncIterator[Reader]:
    config = RuntimeConfig(max_concurrent_executions=1)
    engine = Engine(config, cache_dir=None)
    inbox: asyncio.Queue[bytes] = asyncio.Queue()
    compiled = engine.compile(build_c(SOURCE))
    async with Runtime(config, engine=engine, external=lambda r, d: inbox.put_nowait(d)) as rt:
        await rt.start_agent(AgentSpec(name="fields"), compiled)
        yield Reader(rt, inbox)
    engine.close()


async def test_reads_every_envelope_field_in_one_pass(reader: Reader) -> None:
    raw = (
        b'{"sender":"a","message_id":"m1","conversation_id":"c1","reply_with":"r1",'
        b'"in_reply_to":"q","receiver":"fields","performative":"request",'
        b'"content":{"nested":{"sender":"not me"},"list":[1,"]",{"x":"}"}]}}'
    )
    seen = await reader.read(raw)
    assert seen["rc"] == 0
    assert seen["one_pass"] == {
        "sender": '"a"',
        "receiver": '"fields"',
        "performative": '"request"',
        "content": '{"nested":{"sender":"not me"},"list":[1,"]",{"x":"}"}]}',
        "conversation_id": '"c1"',
        "reply_with": '"r1"',
        "in_reply_to": '"q"',
        "message_id": '"m1"',
    }
    assert seen["one_pass"] == seen["per_field"]


async def test_whitespace_escaped_keys_and_repeated_keys(reader: Reader) -> None:
    raw = (
        b' { "sender" : "a" ,\n\t"perform\\u0061tive":"inform", "content" : [ 1 , 2 ] ,'
        b' "sender":"second", "receiver":"fields", "x\\"y": null }  '
    )
    seen = await reader.read(raw)
    assert seen["rc"] == 0
    one = seen["one_pass"]
    assert one["sender"] == '"a"'  # the first of a repeated key wins
    assert one["performative"] == '"inform"'  # found through its escaped spelling
    assert one["content"] == "[ 1 , 2 ]"
    assert one["reply_with"] is None
    assert one == seen["per_field"]


async def test_absent_fields_are_null(reader: Reader) -> None:
    seen = await reader.read(b'{"receiver":"fields","sender":"s"}')
    assert seen["rc"] == 0
    assert {k for k, v in seen["one_pass"].items() if v is not None} == {"receiver", "sender"}


_keys = st.sampled_from([*FIELDS, "other", "sender2", "contents", "x"])
_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


# The agent is stateless, so one runtime serves every example.
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pairs=st.lists(st.tuples(_keys, _values), max_size=10), indent=st.sampled_from([None, 1]))
async def test_one_pass_matches_per_field_lookup(
    reader: Reader, pairs: list[tuple[str, Any]], indent: int | None
) -> None:
    # Keys may repeat (built by hand, not through a dict): both readers take the first.
    sep = "\n" if indent else ""
    body = "{" + ("," + sep).join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}"
    seen = await reader.read(body.encode())
    assert seen["rc"] == 0
    assert seen["one_pass"] == seen["per_field"]
    first: dict[str, str] = {}
    for k, v in pairs:
        first.setdefault(k, json.dumps(v))
    for name in FIELDS:
        assert seen["one_pass"][name] == first.get(name), name
