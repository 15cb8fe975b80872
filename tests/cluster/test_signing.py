"""Cluster messages are signed with the cluster secret: a node takes only messages signed
with its own secret (or, without one, only unsigned messages), and says why it drops others."""

from __future__ import annotations

import logging
from pathlib import Path

import nats
import pytest

from caxton.clock import ManualClock
from caxton.cluster import NatsBus, NatsServer
from caxton.cluster.bus import NoResponders
from caxton.cluster.signing import HEADER, INTERVAL, BusSigner
from tests.nodeproc import free_port
from tests.support import eventually

from .conftest import coordination


def test_a_message_is_taken_only_with_the_same_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="caxton.cluster")
    one, same, other, none = (
        BusSigner("first-secret"),
        BusSigner("first-secret"),
        BusSigner("second-secret"),
        BusSigner(None),
    )
    headers = one.headers("caxton.x", b"payload")
    assert headers is not None
    assert same.accepts("caxton.x", headers, b"payload")
    assert not same.accepts("caxton.x", headers, b"tampered")
    assert not same.accepts("caxton.y", headers, b"payload")  # not for another subject
    assert not other.accepts("caxton.x", headers, b"payload")
    assert not none.accepts("caxton.x", headers, b"payload")
    assert not one.accepts("caxton.x", None, b"payload")
    assert none.headers("caxton.x", b"payload") is None
    assert none.accepts("caxton.x", None, b"payload")
    text = caplog.text
    assert "signed with another cluster_secret" in text
    assert "this node has none" in text
    assert "from a node without cluster_secret" in text
    assert "first-secret" not in headers[HEADER]
    assert "first-secret" not in text
    assert "second-secret" not in text


def test_refusals_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="caxton.cluster")
    clock = ManualClock()
    signer = BusSigner("s", clock=clock)
    for _ in range(5):
        signer.accepts("caxton.x", None, b"")
    assert len(caplog.records) == 1
    clock.advance(INTERVAL)
    signer.accepts("caxton.x", None, b"")
    assert len(caplog.records) == 2
    assert signer.refused == 6


async def test_requests_need_the_same_secret_both_ways(tmp_path: Path) -> None:
    port = free_port()
    async with NatsServer(coordination(port, seeds=(port,)), tmp_path / "a") as server:
        clients = [await nats.connect(**server.endpoint.connect_options()) for _ in range(3)]
        try:
            serving = NatsBus(clients[0], BusSigner("s1"))
            friend = NatsBus(clients[1], BusSigner("s1"))
            stranger = NatsBus(clients[2], BusSigner(None))

            async def echo(_: str, payload: bytes) -> bytes:
                return payload

            await serving.serve("caxton.echo", echo)
            await clients[0].flush()  # the subscription is at the server before the requests

            # The server may still answer "no responders" for a moment after that flush (seen
            # once in a full run on a busy 2-core machine): ask again, as nodes do.
            async def answered() -> bytes | None:
                try:
                    return await friend.request("caxton.echo", b"hi", 2.0)
                except NoResponders:
                    return None

            answer = await eventually(answered, what="the same secret's request is answered")
            assert answer == b"hi"
            with pytest.raises(TimeoutError):
                await stranger.request("caxton.echo", b"hi", 0.5)
        finally:
            for client in clients:
                await client.close()


def test_no_cluster_traffic_bypasses_the_signatures() -> None:
    """`Msg.respond` sends the request's headers back (its signature, wrong for a reply), and
    a subscription made on the client directly must check and sign as `NatsBus` does."""
    src = Path(__file__).resolve().parents[2] / "src" / "caxton"
    checked = {"cluster/bus.py", "api/remote.py"}
    for path in src.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(src).as_posix()
        assert ".respond(" not in text, where
        if "client.subscribe(" in text or "client.publish(" in text:
            assert where in checked, where
    remote = (src / "api" / "remote.py").read_text(encoding="utf-8")
    assert "signer.accepts(" in remote
    assert "signer.headers(" in remote
