"""The owner side of agent calls from other nodes takes any bytes without failing.

One real node (a one-node cluster with its nats-server); hypothesis sends random payloads and
random well-formed calls to its responder: each gets an `ApiReply` (a 400 envelope when it
makes no sense), and the node keeps answering real calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caxton.api.remote import AgentApiResponder
from caxton.api.remote_wire import ApiCall, decode_reply, encode
from caxton.config import Config
from caxton.config.schema import Address, NetworkingConfig
from caxton.server import Server
from tests.cluster.conftest import coordination
from tests.nodeproc import free_port
from tests.support import fast_runtime

calls = st.builds(
    ApiCall,
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "", "get\r\n"]),
    path=st.one_of(
        st.text(max_size=60),
        st.text(max_size=40).map(lambda tail: "/api/v1/agents/" + tail),
        st.sampled_from(["/api/v1/agents", "/api/v1/agents/../../admin", "/api/v1/agents/x/debug"]),
    ),
    query=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)), max_size=4),
    body=st.binary(max_size=200),
    content_type=st.one_of(
        st.sampled_from(["", "application/json", "application/wasm", "multipart/form-data"]),
        st.text(max_size=30),
    ),
)


def test_the_responder_answers_garbage_and_odd_calls_with_a_reply(tmp_path: Path) -> None:
    config = Config(
        networking=dataclasses.replace(
            NetworkingConfig(),
            bind_address=Address("127.0.0.1", free_port()),
            metrics_address=Address("127.0.0.1", free_port()),
            admin_address=Address("127.0.0.1", free_port()),
        ),
        runtime=fast_runtime(),
        coordination=coordination(local_state_path=tmp_path / "local.db", node_name="solo"),
    )
    loop = asyncio.new_event_loop()
    server = Server(config)
    loop.run_until_complete(server.start())
    try:
        responder = server._responder
        assert isinstance(responder, AgentApiResponder)

        def answer(payload: bytes) -> tuple[int, bytes]:
            reply = loop.run_until_complete(responder.handle(payload))
            return reply.status, reply.body

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.one_of(st.binary(max_size=300), calls.map(encode)))
        def fuzz(payload: bytes) -> None:
            status, body = answer(payload)
            assert 200 <= status < 500 or status == 503, body
            if status >= 400 and body:
                assert "error" in json.loads(body)

        fuzz()
        status, body = answer(encode(ApiCall("GET", "/api/v1/agents", [], b"", "")))
        assert status == 200
        assert json.loads(body)["total"] == 0
        assert (
            decode_reply(encode(loop.run_until_complete(responder.handle(b"\xc1")))).status == 400
        )
    finally:
        loop.run_until_complete(server.aclose())
        loop.close()
