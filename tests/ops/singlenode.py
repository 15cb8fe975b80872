"""One real node process that carried some traffic, and what its ``/metrics`` answered.

Traffic: an ``echo`` agent answering `ECHOES` requests, a message to an unknown receiver that
becomes a dead letter, an ``/api/v1/events`` WebSocket opened and closed.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.nodeproc import NodeProcess, write_config
from tests.ops.clustered import value as _value
from tests.support import EXAMPLES, eventually

__all__ = ["ECHOES", "Scrapes", "node_scrapes"]

#: Requests sent to the echo agent (each one answered with an ``inform``).
ECHOES = 5
_TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True, slots=True)
class Scrapes:
    """What GET /metrics answered while the event stream was open, and after all traffic."""

    content_type: str
    stream_open: str
    final: str


async def _scrape(session: aiohttp.ClientSession, node: NodeProcess) -> tuple[str, str]:
    async with session.get(node.url("metrics", "/metrics")) as resp:
        assert resp.status == 200, await resp.text()
        return resp.headers["Content-Type"], await resp.text()


async def _traffic(node: NodeProcess) -> Scrapes:
    api = node.url("api", "/api/v1")
    async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
        async with session.post(
            f"{api}/agents",
            params={"name": "echo"},
            data=(EXAMPLES / "echo.wasm").read_bytes(),
            headers={"Content-Type": "application/wasm"},
        ) as resp:
            assert resp.status == 201, await resp.text()

        async with session.ws_connect(f"{api}/events", heartbeat=None) as ws:
            first = await ws.receive_json(timeout=5)
            assert first["type"] == "subscribed", first
            for i in range(ECHOES):
                body = {"receiver": "echo", "sender": "ops", "performative": "request"}
                async with session.post(
                    f"{api}/messages", params={"wait": "5s"}, json={**body, "content": {"n": i}}
                ) as resp:
                    assert resp.status == 200, await resp.text()
                    reply = await resp.json()
                assert (reply["sender"], reply["performative"]) == ("echo", "inform")
                assert reply["content"] == {"n": i}
            ghost = {"receiver": "ghost", "sender": "ops", "performative": "inform"}
            async with session.post(f"{api}/messages", json=ghost) as resp:
                assert resp.status == 202, await resp.text()

            async def dead_letter_counted() -> str | None:
                _, text = await _scrape(session, node)
                counted = _value(text, "caxton_dead_letters_total", reason="unknown_receiver")
                return text if counted else None

            stream_open = await eventually(dead_letter_counted)

        async def stream_gone() -> tuple[str, str] | None:
            content_type, text = await _scrape(session, node)
            gone = _value(text, "caxton_websocket_connections") == 0
            return (content_type, text) if gone else None

        content_type, final = await eventually(stream_gone)
    return Scrapes(content_type=content_type, stream_open=stream_open, final=final)


def node_scrapes(directory: Path) -> Scrapes:
    """Run a node (without the caller's CAXTON_* environment) under `directory`, send it the
    traffic above, stop it, and return its scrapes."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("CAXTON_") or name == "JWT_SECRET":
                mp.delenv(name)
        with NodeProcess(write_config(directory)).start() as node:
            return asyncio.run(_traffic(node))
