"""One trace follows a contract-net conversation across two real nodes (`caxton serve`
processes with their nats-server children), exported over OTLP (HTTP from one node, gRPC from
the other) to a real receiver built on opentelemetry-proto; log lines join the trace."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver_fixture  # noqa: F401
from tests.support import example, wait_until

from .nodes import Cluster, ClusterNode

pytestmark = pytest.mark.slow

TRACE = "5c3f7a1e0d9b4c2a8e6f1b3d5a7c9e0f"
CLIENT_SPAN = "1a2b3c4d5e6f7a8b"


@pytest.fixture
def traced_pair(tmp_path: Path, otlp_receiver: OtlpReceiver) -> Iterator[Cluster]:
    with Cluster(tmp_path, 2, probe_interval=0.2, gossip_interval=0.1) as cluster:
        endpoints = (otlp_receiver.http_endpoint, otlp_receiver.grpc_endpoint)
        for node, endpoint in zip(cluster.nodes, endpoints, strict=True):
            text = node.config_path.read_text(encoding="utf-8")
            node.config_path.write_text(
                text.replace(
                    "[observability]\n",
                    "[observability]\nenable_tracing = true\ntrace_sample_rate = 0.0\n"
                    f'otlp_endpoint = "{endpoint}"\n',
                ),
                encoding="utf-8",
            )
        cluster.start()
        cluster.all_alive(timeout=15)
        yield cluster


def deploy(entry: ClusterNode, name: str, module: str, node: str, **env: str) -> None:
    body = {
        "name": name,
        "wasm": base64.b64encode(example(module)).decode(),
        "node": node,
        "env": env,
    }
    status, answer = entry.call("POST", "/api/v1/agents", body)
    assert status == 201, answer


def lists_everywhere(cluster: Cluster, placement: dict[str, str]) -> None:
    def agree() -> bool:
        for node in cluster.nodes:
            status, page = node.call("GET", "/api/v1/agents?limit=1000")
            if status != 200:
                return False
            seen = {a["name"]: a["node"] for a in page["agents"]}
            if any(seen.get(name) != where for name, where in placement.items()):
                return False
        return True

    wait_until(agree, 15, what=f"every node lists {placement}")


def send_traced(node: ClusterNode, message: dict[str, Any], traceparent: str) -> dict[str, Any]:
    import urllib.request

    request = urllib.request.Request(
        node.url("api", "/api/v1/messages?wait=15s"),
        data=json.dumps(message).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "traceparent": traceparent},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        reply: dict[str, Any] = json.loads(response.read())
        return reply


def test_a_contract_net_across_two_nodes_is_one_trace(
    traced_pair: Cluster, otlp_receiver: OtlpReceiver
) -> None:
    first, second = traced_pair.nodes
    deploy(first, "manager", "manager", first.name)
    deploy(first, "bidder-a", "bidder", first.name, PRICE="30")
    deploy(first, "bidder-b", "bidder", second.name, PRICE="20")
    deploy(first, "bidder-c", "bidder", second.name, REFUSE="1")
    lists_everywhere(
        traced_pair,
        {"manager": first.name, "bidder-a": first.name, "bidder-b": second.name,
         "bidder-c": second.name},
    )  # fmt: skip

    start = {
        "receiver": "manager",
        "performative": "request",
        "protocol": "fipa-contract-net",
        "content": {"op": "start", "task": "t", "bidders": ["bidder-a", "bidder-b", "bidder-c"]},
    }
    reply = send_traced(first, start, f"00-{TRACE}-{CLIENT_SPAN}-01")
    assert reply["performative"] == "inform", reply
    conversation = reply["conversation_id"]

    def in_trace(span: ReceivedSpan) -> bool:
        return span.trace_id == TRACE

    # 10 handled messages: the start, 3 cfps, 3 answers, the award and the rejection, the
    # winner's result; the manager's inform to the client is sent, not handled by an agent.
    # The nodes export on their own schedules: wait until every span's parent has arrived.
    def complete() -> bool:
        spans = [s for s in otlp_receiver.spans() if in_trace(s)]
        ids = {s.span_id for s in spans} | {CLIENT_SPAN}
        names = [s.name for s in spans]
        return (
            names.count("caxton.handle") >= 10
            and names.count("caxton.receive") >= 4
            and all(s.parent_span_id in ids for s in spans)
        )

    wait_until(complete, 20, what="the whole trace at the receiver")
    spans = [s for s in otlp_receiver.spans() if in_trace(s)]
    handles = [s for s in spans if s.name == "caxton.handle"]
    assert len(handles) == 10
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(spans), "span ids are unique"

    def node_of(span: ReceivedSpan) -> str:
        return str(span.resource["service.instance.id"])

    # The client's span is the parent of the entry node's server span; everything else
    # descends from it, on both nodes.
    [server] = [s for s in spans if s.name == "POST /api/v1/messages"]
    assert server.parent_span_id == CLIENT_SPAN
    assert server.kind == "server"
    assert node_of(server) == first.name
    roots = [s for s in spans if s.parent_span_id not in by_id]
    assert roots == [server]
    [accept] = [s for s in spans if s.name == "caxton.accept"]
    assert accept.parent_span_id == server.span_id

    # Every agent's handling: who ran it where, on what, with what outcome.
    agents = {str(h.attributes["caxton.agent.name"]) for h in handles}
    assert agents == {"manager", "bidder-a", "bidder-b", "bidder-c"}
    for handle in handles:
        name = handle.attributes["caxton.agent.name"]
        expected = first.name if name in ("manager", "bidder-a") else second.name
        assert node_of(handle) == expected, (name, node_of(handle))
        assert handle.kind == "consumer"
        assert handle.attributes["caxton.outcome"] == "ok"
        assert handle.attributes["messaging.message.conversation_id"] == conversation
        assert handle.attributes["caxton.agent.version"] == 1
        parent = by_id[str(handle.parent_span_id)]
        if handle.attributes["caxton.message.performative"] == "request":
            assert parent is accept  # the client's start, handled by the manager
            continue
        # Every other handling is a child of the send span that queued it, on its node.
        assert parent.name == "caxton.send"
        assert parent.attributes["messaging.destination.name"] == name
        sender = by_id[str(parent.parent_span_id)]
        assert sender.name == "caxton.handle"
        assert sender.attributes["caxton.agent.name"] == handle.attributes["caxton.message.sender"]
    cross = [
        h for h in handles if node_of(h) != node_of(by_id[str(h.parent_span_id)])
    ]  # the cfps to bidder-b and -c, their answers, the award and the rejection... across
    assert len(cross) >= 4
    # The hop itself: forwarded on one node, received on the other, under the same send.
    forwards = [s for s in spans if s.name == "caxton.forward"]
    receives = [s for s in spans if s.name == "caxton.receive"]
    assert forwards
    for receive in receives:
        send = by_id[str(receive.parent_span_id)]
        assert send.name == "caxton.send"
        assert node_of(receive) != node_of(send)
        assert receive.attributes["caxton.origin_node"] == node_of(send)


def test_log_lines_written_while_handling_carry_the_trace(
    traced_pair: Cluster, otlp_receiver: OtlpReceiver
) -> None:
    first, second = traced_pair.nodes
    deploy(first, "ping", "ping", second.name)
    deploy(first, "pong", "pong", first.name)
    lists_everywhere(traced_pair, {"ping": second.name, "pong": first.name})
    start = {
        "receiver": "ping",
        "performative": "request",
        "content": {"op": "start", "peer": "pong", "n": 2},
    }
    reply = send_traced(first, start, f"00-{TRACE}-{CLIENT_SPAN}-01")
    assert reply["content"] == {"done": 2}
    [first_ping] = otlp_receiver.wait_for(
        lambda s: (
            s.trace_id == TRACE
            and s.name == "caxton.handle"
            and s.attributes.get("caxton.agent.name") == "ping"
            and s.attributes.get("caxton.message.performative") == "request"
        ),
        timeout=20,
    )
    assert first_ping.resource["service.instance.id"] == second.name

    def logged() -> list[dict[str, Any]]:
        records = [
            json.loads(line)
            for line in second.log_path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        return [r for r in records if str(r.get("message", "")).startswith("ping: 2 rounds")]

    wait_until(lambda: bool(logged()), 10, what="ping's log line")
    [line] = logged()
    assert line["logger"] == "caxton.agent.ping"
    assert line["trace_id"] == TRACE
    assert line["span_id"] == first_ping.span_id
    assert line["agent"] == "ping"
    assert line["conversation_id"] == reply["conversation_id"]
