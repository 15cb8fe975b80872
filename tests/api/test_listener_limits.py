"""Connection limits on a real listener, and the metrics listener switch."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

from aiohttp import web

from caxton.api.listener import ConnectionLimits, Listener
from caxton.config import (
    Address,
    Config,
    CoordinationConfig,
    NetworkingConfig,
    ObservabilityConfig,
)
from caxton.server import Server
from tests.nodeproc import free_port
from tests.support import eventually


def _app() -> web.Application:
    app = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app.router.add_get("/", hello)
    return app


async def _closed_by_peer(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(1), within)
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return data == b""


async def test_max_connections_closes_the_extra_connection() -> None:
    limits = ConnectionLimits(
        max_connections=2, connection_timeout=30, keepalive_timeout=30, shutdown_timeout=1
    )
    listener = Listener(_app(), Address("127.0.0.1", 0), name="test", limits=limits)
    await listener.start()
    assert listener.bound_port is not None
    try:
        conns = [await asyncio.open_connection("127.0.0.1", listener.bound_port) for _ in range(2)]

        async def accepted() -> bool:
            return listener.active_connections == 2

        await eventually(accepted, what="the listener accepted both connections")
        assert listener.active_connections == 2
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound_port)
        assert await _closed_by_peer(reader, 2.0)
        assert listener.rejected_connections == 1
        # The first two still work.
        r0, w0 = conns[0]
        w0.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await r0.readline()).startswith(b"HTTP/1.1 200")
        for _, w in [*conns, (reader, writer)]:
            w.close()
    finally:
        await listener.aclose()


async def test_connection_timeout_closes_a_silent_connection() -> None:
    limits = ConnectionLimits(
        max_connections=10, connection_timeout=0.2, keepalive_timeout=30, shutdown_timeout=1
    )
    listener = Listener(_app(), Address("127.0.0.1", 0), name="test", limits=limits)
    await listener.start()
    assert listener.bound_port is not None
    try:
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", listener.bound_port)
        busy_r, busy_w = await asyncio.open_connection("127.0.0.1", listener.bound_port)
        busy_w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = await busy_r.readuntil(b"hi")
        assert first.startswith(b"HTTP/1.1 200")
        assert await _closed_by_peer(silent_r, 2.0)
        # A connection that sent a request is governed by keepalive_timeout instead.
        await asyncio.sleep(0.3)  # real time past connection_timeout (aiohttp's loop timers)
        busy_w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await busy_r.readline()).startswith(b"HTTP/1.1 200")
        silent_w.close()
        busy_w.close()
    finally:
        await listener.aclose()


async def test_enable_metrics_false_turns_the_metrics_listener_off(tmp_path: Path) -> None:
    api, metrics, admin = free_port(), free_port(), free_port()
    config = Config(
        networking=dataclasses.replace(
            NetworkingConfig(),
            bind_address=Address("127.0.0.1", api),
            metrics_address=Address("127.0.0.1", metrics),
            admin_address=Address("127.0.0.1", admin),
        ),
        coordination=CoordinationConfig(local_state_path=tmp_path / "local.db"),
        observability=ObservabilityConfig(enable_metrics=False),
    )
    server = Server(config)
    await server.start()
    try:
        assert [listener.name for listener in server.listeners] == ["API", "admin listener"]
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", metrics)) != 0
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", api)) == 0
    finally:
        await server.aclose()
