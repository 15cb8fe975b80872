"""End to end on real `caxton serve` processes (each with its nats-server child): three nodes
from one seed list, agents placed by the shared registry (no fixed directory), everything
through the HTTP API and the CLI as an operator would."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from caxton.cli import cli
from tests.support import example, next_event, wait_until, wat

from .nodes import Cluster, ClusterNode

pytestmark = pytest.mark.slow

P = 0.2
GOSSIP = 0.1


@pytest.fixture
def three(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path, 3, probe_interval=P, gossip_interval=GOSSIP) as cluster:
        cluster.start()
        cluster.all_alive(timeout=15)
        yield cluster


def deploy_body(name: str, module: str = "echo", **fields: Any) -> dict[str, Any]:
    return {"name": name, "wasm": base64.b64encode(example(module)).decode(), **fields}


def listed(node: ClusterNode) -> dict[str, str]:
    """{agent: hosting node} as `node` lists them."""
    status, page = node.call("GET", "/api/v1/agents?limit=1000")
    assert status == 200, page
    return {agent["name"]: agent["node"] for agent in page["agents"]}


def everyone_lists(cluster: Cluster, expected: dict[str, str], within: float = 10) -> None:
    def agree() -> bool:
        return all(
            {k: v for k, v in listed(node).items() if k in expected} == expected
            for node in cluster.running()
        )

    wait_until(agree, within, what=lambda: f"every node lists {expected}: {_views(cluster)}")


def echo_on_the_second(cluster: Cluster) -> tuple[ClusterNode, ClusterNode]:
    """Start the 2 nodes, deploy echo on the second through the first, and wait until both
    list it there: (the entry node, the owner)."""
    cluster.start()
    cluster.all_alive(timeout=15)
    entry, owner = cluster.nodes
    status, body = entry.call("POST", "/api/v1/agents", deploy_body("echo", node=owner.name))
    assert status == 201, body
    everyone_lists(cluster, {"echo": owner.name})
    return entry, owner


def _views(cluster: Cluster) -> str:
    return json.dumps({node.name: listed(node) for node in cluster.running()})


async def _reply_on_the_stream(node: ClusterNode, message: dict[str, Any]) -> dict[str, Any]:
    """Send `message` through `node` and return the first message event from its receiver
    on `node`'s event stream."""
    url = node.url("api", f"/api/v1/events?agent={message['receiver']}")
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await next_event(ws, "subscribed")
        async with http.post(node.url("api", "/api/v1/messages"), json=message) as response:
            assert response.status == 202, await response.text()
        async with asyncio.timeout(5):
            while True:
                event = await next_event(ws, "message")
                if event["sender"] == message["receiver"]:
                    return event


def test_agents_placed_from_any_node_are_listed_everywhere_answer_and_are_run_from_any_node(
    three: Cluster,
) -> None:
    a, b, c = three.nodes
    status, body = c.call("POST", "/api/v1/agents", deploy_body("echo", node=a.name))
    assert (status, body.get("node"), body.get("state")) == (201, a.name, "running"), body
    everyone_lists(three, {"echo": a.name})
    # "auto": the live node hosting the fewest agents (b and c host none: the first by name).
    status, body = c.call("POST", "/api/v1/agents", deploy_body("echo2", node="auto"))
    assert status == 201, body
    assert body["node"] == min(b.name, c.name)
    everyone_lists(three, {"echo": a.name, "echo2": min(b.name, c.name)})

    message = {"receiver": "echo", "performative": "request", "content": {"n": 7}}
    status, reply = c.call("POST", "/api/v1/messages?wait=5", message)
    assert status == 200, reply
    assert (reply["sender"], reply["content"], reply["performative"]) == (
        "echo",
        {"n": 7},
        "inform",
    )

    # The event stream of the node a client sends from shows the reply from the other node.
    reply = asyncio.run(_reply_on_the_stream(c, {**message, "sender": "watcher"}))
    assert (reply["sender"], reply["receiver"], reply["content"]) == ("echo", "watcher", {"n": 7})

    status, body = b.call("POST", "/api/v1/agents/echo/stop")
    assert (status, body["state"], body["node"]) == (200, "stopped", a.name), body
    status, body = a.call("GET", "/api/v1/agents/echo")
    assert (status, body["state"]) == (200, "stopped")
    status, body = b.call("POST", "/api/v1/agents/echo/start")
    assert (status, body["state"], body["node"]) == (200, "running", a.name), body
    status, reply = c.call("POST", "/api/v1/messages?wait=5", message)
    assert (status, reply.get("sender")) == (200, "echo"), reply
    status, body = b.call("GET", "/api/v1/agents/echo/logs")
    assert (status, body["name"]) == (200, "echo"), body
    assert isinstance(body["lines"], list)
    status, body = b.call("GET", "/api/v1/agents/echo")
    assert body["counters"]["messages_handled"] == 3

    result = CliRunner().invoke(cli, ["agent", "list"], env={"CAXTON_SERVER": c.url("api", "")})
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert "NODE" in header.split()
    row = {line.split()[0]: line.split() for line in rows if line.strip()}
    assert a.name in row["echo"]
    assert min(b.name, c.name) in row["echo2"]

    status, _ = b.call("DELETE", "/api/v1/agents/echo")
    assert status == 204
    assert a.call("GET", "/api/v1/agents/echo")[0] == 404

    def gone() -> bool:
        return all("echo" not in listed(node) for node in three.nodes)

    wait_until(gone, 10, what="every node forgets echo")


def metric(node: ClusterNode, name: str) -> float | None:
    """The value of an unlabelled metric on `node`'s metrics listener (None: not there)."""
    status, body = node.get("metrics", "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return None


def handled(node: ClusterNode, agent: str) -> int:
    status, body = node.call("GET", f"/api/v1/agents/{agent}")
    assert status == 200, body
    return int(body["counters"]["messages_handled"])


def route_port_free(node: ClusterNode) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nats-server does
        try:
            sock.bind(("127.0.0.1", node.route_port))
        except OSError:
            return False
        return True


def restart(node: ClusterNode) -> None:
    """Start a node that was killed again, once its nats-server (which dies with it) let go
    of its route port."""
    wait_until(lambda: route_port_free(node), 10, what="the killed node's route port is free")
    node.start()


def test_messages_a_killed_node_accepted_for_an_unreachable_owner_are_all_delivered_after_restarts(
    tmp_path: Path,
) -> None:
    singles, bulk = 40, 160
    with Cluster(tmp_path, 2, probe_interval=P, gossip_interval=GOSSIP) as cluster:
        entry, owner = echo_on_the_second(cluster)
        cluster.kill(1)  # the owner crashes: nothing can be forwarded
        message = {"receiver": "echo", "performative": "request", "sender": "tester"}
        for i in range(singles):
            status, body = entry.call("POST", "/api/v1/messages", {**message, "content": i})
            assert status == 202, body
        batch = [{**message, "content": singles + i} for i in range(bulk)]
        status, body = entry.call("POST", "/api/v1/messages", batch)
        assert status == 202, body
        assert len(body["accepted"]) == bulk
        total = singles + bulk
        wait_until(
            lambda: metric(entry, "caxton_cluster_outbox_depth") == total,
            5,
            what=lambda: f"outbox depth {total}: {metric(entry, 'caxton_cluster_outbox_depth')}",
        )
        cluster.kill(0)  # kill -9 of the node that accepted them, before it could forward
        restart(owner)
        restart(entry)
        wait_until(
            lambda: handled(owner, "echo") >= total,
            20,
            what=lambda: f"echo handled all {total}: {handled(owner, 'echo')}",
        )
        wait_until(
            lambda: metric(entry, "caxton_cluster_outbox_depth") == 0,
            5,
            what="the outbox is empty",
        )
        time.sleep(0.5)  # anything sent twice would have arrived by now
        assert handled(owner, "echo") == total  # no duplicate: each delivered exactly once


def test_a_ping_pong_pair_split_across_two_node_processes_plays_10000_exchanges(
    tmp_path: Path,
) -> None:
    rounds = 10_000
    with Cluster(tmp_path, 2, probe_interval=P, gossip_interval=GOSSIP) as cluster:
        cluster.start()
        cluster.all_alive(timeout=15)
        a, b = cluster.nodes
        for name, host in (("pong", b), ("ping", a)):
            status, body = a.call("POST", "/api/v1/agents", deploy_body(name, name, node=host.name))
            assert (status, body.get("node")) == (201, host.name), body
        everyone_lists(cluster, {"ping": a.name, "pong": b.name})
        start = {
            "receiver": "ping",
            "performative": "request",
            "sender": "referee",
            "content": {"op": "start", "peer": "pong", "n": rounds},
        }
        status, body = b.call("POST", "/api/v1/messages", start)  # through the other node
        assert status == 202, body
        # Counted at both ends: pong answered each request once, ping handled the start and
        # each answer once (a lost, duplicated or reordered one would stop or fork the game:
        # ping sends request i+1 only for the answer to request i). Bounded well above the
        # 30 s it takes on a loaded 2-core machine.
        wait_until(
            lambda: handled(a, "ping") >= rounds + 1,
            120,
            interval=0.5,
            what=lambda: f"{rounds} exchanges: ping handled {handled(a, 'ping')}",
        )
        wait_until(lambda: handled(b, "pong") >= rounds, 5, what="pong's count")
        status, debug = a.call("GET", "/api/v1/agents/ping/debug?messages=5&logs=0")
        assert status == 200, debug
        done = [m for m in debug["recent_messages"]["messages"] if m["receiver"] == "referee"]
        assert [m["content"] for m in done] == [{"done": rounds}]
        assert done[0]["conversation_id"] == body["conversation_id"]
        time.sleep(0.3)
        assert (handled(a, "ping"), handled(b, "pong")) == (rounds + 1, rounds)


def test_timers_failure_replies_bulk_and_redrive_reach_agents_on_another_node(
    tmp_path: Path,
) -> None:
    with Cluster(tmp_path, 2, probe_interval=P, gossip_interval=GOSSIP) as cluster:
        cluster.start()
        cluster.all_alive(timeout=15)
        a, b = cluster.nodes
        modules = {"later": wat("later"), "nop": wat("nop")}
        for name, module, host in (
            ("later", "later", a),
            ("nop", "nop", b),
            ("requester", "requester", a),
            ("responder", "responder", b),
        ):
            wasm = modules.get(module) or example(module)
            body = {"name": name, "wasm": base64.b64encode(wasm).decode(), "node": host.name}
            status, answer = a.call("POST", "/api/v1/agents", body)
            assert (status, answer.get("node")) == (201, host.name), answer
        everyone_lists(cluster, {"later": a.name, "nop": b.name, "responder": b.name})

        # A timer: `later` (on a) schedules the message it got, to both its receivers, every
        # 500 ms: each one that fires reaches nop on b.
        tick = {"receiver": ["later", "nop"], "performative": "inform", "content": "tick"}
        status, body = a.call("POST", "/api/v1/messages", tick)
        assert status == 202, body
        wait_until(
            lambda: handled(b, "nop") >= 3,
            10,
            what=lambda: f"two timers fired into nop on b: {handled(b, 'nop')}",
        )
        status, body = b.call("POST", "/api/v1/agents/later/stop")
        assert (status, body["state"]) == (200, "stopped"), body

        # A failure reply: requester (on a) asks responder (stopped, on b); b dead-letters
        # the request and its failure reply reaches requester on a, which tells the client.
        status, body = a.call("POST", "/api/v1/agents/responder/stop")
        assert (status, body["state"], body["node"]) == (200, "stopped", b.name), body
        ask = {
            "receiver": "requester",
            "performative": "request",
            "content": {"op": "ask", "responder": "responder", "action": "add", "a": 2, "b": 3},
        }
        status, reply = a.call("POST", "/api/v1/messages?wait=5s", ask)
        assert status == 200, reply
        assert reply["sender"] == "requester"
        assert reply["content"]["outcome"] == "failed", reply
        status, page = a.call("GET", "/api/v1/dead-letters?limit=1000")  # gathered from b
        assert (status, page["missing_nodes"]) == (200, []), page
        found = [
            (d["node"], d["reason"]) for d in page["dead_letters"] if d["receiver"] == "responder"
        ]
        assert found == [(b.name, "agent_not_running")], page

        # A redrive: messages for `ghost`, unknown when they came, are dead letters on a; once
        # ghost lives on b, a redrive of them reaches it there. Dead letter ids are per node:
        # through another node's API (or CLI), `?node=` (`--node`) names the node that keeps it.
        ids = []
        for _ in range(2):
            status, body = a.call(
                "POST", "/api/v1/messages", {"receiver": "ghost", "performative": "inform"}
            )
            assert status == 202, body
            ids.append(body["message_id"])

        def letters() -> list[dict[str, Any]] | None:
            status, page = b.call("GET", "/api/v1/dead-letters?limit=1000")  # gathered from a
            assert status == 200, page
            found = [d for d in page["dead_letters"] if d["message_id"] in ids]
            return found if len(found) == 2 else None

        first, second = wait_until(letters, 5, what="the messages for ghost are dead letters")
        for dead in (first, second):
            assert (dead["node"], dead["reason"]) == (a.name, "unknown_receiver")
        status, body = a.call("POST", "/api/v1/agents", {**deploy_body("ghost"), "node": b.name})
        assert status == 201, body
        everyone_lists(cluster, {"ghost": b.name})
        redrive = f"/api/v1/dead-letters/{first['id']}/redrive"
        status, body = b.call("POST", f"{redrive}?node=nowhere")
        assert (status, body["error"]["details"]) == (400, {"field": "node"}), body
        status, body = b.call("POST", f"{redrive}?node={a.name}")
        assert (status, body.get("message_id"), body.get("dead_letter_id")) == (
            202,
            first["message_id"],
            first["id"],
        ), body
        wait_until(lambda: handled(b, "ghost") == 1, 5, what="the redriven message reached b")
        status, body = b.call("POST", f"{redrive}?node={a.name}")  # a's answer: done already
        assert (status, body["error"]["code"]) == (400, "INVALID_REQUEST"), body
        # The CLI lists every node's dead letters from any node, saying which node keeps each,
        # and redrives one through any node with --node.
        server = {"CAXTON_SERVER": b.url("api", "")}
        result = CliRunner().invoke(cli, ["dead-letters", "list", "--limit", "1000"], env=server)
        assert result.exit_code == 0, result.output
        header, *rows = result.output.splitlines()
        assert header.split()[:3] == ["ID", "NODE", "TIME"]
        listed_ = [row.split()[:2] for row in rows if second["message_id"] in row]
        assert listed_ == [[str(second["id"]), a.name]]
        result = CliRunner().invoke(
            cli, ["dead-letters", "redrive", str(second["id"]), "--node", a.name], env=server
        )
        assert result.exit_code == 0, result.output
        assert second["message_id"] in result.output
        wait_until(lambda: handled(b, "ghost") == 2, 5, what="the second redrive reached b")

        # Bulk: one request to a, every message delivered once to ghost on b.
        batch = [{"receiver": "ghost", "performative": "inform", "content": i} for i in range(200)]
        status, body = a.call("POST", "/api/v1/messages", batch)
        assert (status, len(body["accepted"])) == (202, 200), body
        wait_until(lambda: handled(b, "ghost") >= 202, 10, what="the bulk reached ghost on b")
        time.sleep(0.3)
        assert handled(b, "ghost") == 202


def test_kill_9_of_the_entry_node_while_it_forwards_delivers_each_message_once(
    tmp_path: Path,
) -> None:
    count = 3000
    with Cluster(tmp_path, 2, probe_interval=P, gossip_interval=GOSSIP) as cluster:
        entry, owner = echo_on_the_second(cluster)
        message = {
            "receiver": "echo",
            "performative": "inform",
            "sender": "tester",
            "conversation_id": "in-order",
        }
        for start in range(0, count, 1000):
            batch = [{**message, "content": start + i} for i in range(1000)]
            status, body = entry.call("POST", "/api/v1/messages", batch)
            assert status == 202, body
        cluster.kill(0)  # mid-stream: some forwarded and acknowledged, some not yet
        at_kill = handled(owner, "echo")
        restart(entry)
        wait_until(
            lambda: handled(owner, "echo") >= count,
            30,
            what=lambda: f"all {count} handled: {handled(owner, 'echo')} (at the kill {at_kill})",
        )
        wait_until(
            lambda: metric(entry, "caxton_cluster_outbox_depth") == 0, 5, what="outbox empty"
        )
        time.sleep(0.3)
        # The owner dropped what it had committed but not acknowledged before the kill.
        assert handled(owner, "echo") == count
        # In order: echo's replies (kept by its node, in the order it sent them) answer
        # 0, 1, 2, ... although the entry node resent what it had not seen acknowledged.
        answered: list[int] = []
        for offset in range(0, 2 * count, 1000):
            path = f"/api/v1/conversations/in-order?offset={offset}&limit=1000"
            status, page = entry.call("GET", path)
            assert (status, page["missing_nodes"]) == (200, []), page
            answered += [m["content"] for m in page["messages"] if m["node"] == owner.name]
        assert answered == list(range(count))


def test_messages_for_an_agent_whose_node_stopped_gracefully_are_delivered_when_it_is_back(
    tmp_path: Path,
) -> None:
    count = 100
    with Cluster(tmp_path, 2, probe_interval=P, gossip_interval=GOSSIP) as cluster:
        entry, owner = echo_on_the_second(cluster)
        code, _ = owner.stop()  # SIGTERM: a rolling restart, say
        assert code == 0
        cluster.wait_views(
            lambda views: views[entry.name][owner.name] == "left",
            5,
            observers=[entry],
            what="the owner is left",
        )
        batch = [
            {"receiver": "echo", "performative": "request", "sender": "tester", "content": i}
            for i in range(count)
        ]
        status, body = entry.call("POST", "/api/v1/messages", batch)
        assert (status, len(body["accepted"])) == (202, count), body
        wait_until(
            lambda: metric(entry, "caxton_cluster_outbox_depth") == count,
            5,
            what="kept in the outbox while the owner is away",
        )
        restart(owner)
        wait_until(
            lambda: handled(owner, "echo") >= count,
            20,
            what=lambda: f"all {count} handled: {handled(owner, 'echo')}",
        )
        time.sleep(0.3)
        assert handled(owner, "echo") == count
