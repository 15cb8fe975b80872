"""Request and reply on the buses: in memory (with partitions) and over two routed servers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from caxton.cluster import InMemoryBus, NatsBus, NatsServer
from caxton.cluster.bus import Bus, NoResponders
from tests.nodeproc import free_port
from tests.support import eventually

from .conftest import coordination


async def upper(subject: str, payload: bytes) -> bytes:
    return subject.encode() + b":" + payload.upper()


async def fail(subject: str, payload: bytes) -> bytes:
    raise RuntimeError("the responder broke")


async def test_in_memory_request_reply_no_responders_partition_and_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = InMemoryBus()
    a, b = bus.connect("a"), bus.connect("b")
    with pytest.raises(NoResponders):
        await a.request("node.b.inbox", b"hi", within=1)
    stop = await b.serve("node.b.*", upper)
    assert await a.request("node.b.inbox", b"hi", within=1) == b"node.b.inbox:HI"
    bus.partition({"a"}, {"b"})
    with pytest.raises(TimeoutError):
        await a.request("node.b.inbox", b"hi", within=1)
    bus.heal()
    await stop()
    await stop()
    with pytest.raises(NoResponders):
        await a.request("node.b.inbox", b"hi", within=1)
    await b.serve("node.b.inbox", fail)
    with pytest.raises(TimeoutError):
        await a.request("node.b.inbox", b"hi", within=1)
    assert "a responder for node.b.inbox failed" in caplog.text


async def test_nats_request_reply_across_two_servers(tmp_path: Path) -> None:
    ports = (free_port(), free_port())
    async with (
        NatsServer(coordination(ports[0], seeds=ports), tmp_path / "a") as server_a,
        NatsServer(coordination(ports[1], seeds=ports), tmp_path / "b") as server_b,
    ):
        client_a = await nats.connect(**server_a.endpoint.connect_options())
        client_b = await nats.connect(**server_b.endpoint.connect_options())
        try:
            a: Bus = NatsBus(client_a)
            b: Bus = NatsBus(client_b)
            with pytest.raises(NoResponders):
                await a.request("node.b.inbox", b"hi", within=2)
            await b.serve("node.b.*", upper)
            await b.serve("broken.b", fail)

            async def answered() -> bytes | None:
                try:
                    return await a.request("node.b.inbox", b"hi", within=0.5)
                except (NoResponders, TimeoutError):
                    return None  # the route and its interest are still on their way

            assert await eventually(answered, within=10) == b"node.b.inbox:HI"
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(TimeoutError):
                await a.request("broken.b", b"hi", within=0.3)
            assert 0.25 < loop.time() - started < 2
        finally:
            await client_a.close()
            await client_b.close()
