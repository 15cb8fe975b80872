"""Requests HTTP itself refuses: the JSON error envelope, one warning.

Raw bytes on a real socket to a real listener serving a real node's API: a bad request line,
oversized headers, both Content-Length and Transfer-Encoding (request smuggling), invalid
header characters and broken chunked framing. Each gets a 4xx in the envelope and the
connection closed, and the log has one WARNING line for it, without a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from caxton.api.app import create_app
from caxton.api.listener import ConnectionLimits, Listener
from caxton.config import Address, Config, CoordinationConfig, NetworkingConfig
from caxton.node import Node
from tests.support import fast_runtime

LIMITS = ConnectionLimits(
    max_connections=20, connection_timeout=5, keepalive_timeout=5, shutdown_timeout=1
)


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[int]:
    config = Config(
        coordination=CoordinationConfig(local_state_path=tmp_path / "local.db"),
        runtime=fast_runtime(),
        networking=dataclasses.replace(NetworkingConfig(), request_timeout=10.0),
    )
    node = Node(config)
    await node.start()
    listener = Listener(create_app(node), Address("127.0.0.1", 0), name="API", limits=LIMITS)
    await listener.start()
    assert listener.bound_port is not None
    try:
        yield listener.bound_port
    finally:
        await listener.aclose()
        await node.aclose()


async def exchange(port: int, data: bytes) -> tuple[int, dict[str, str], Any]:
    """Send ``data`` and read the answer to the end (the server must close the connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
    }
    return int(status_line.split()[1]), headers, json.loads(body)


HOST = b"Host: 127.0.0.1\r\n"
SMUGGLE_BODY = b"0\r\n\r\nGET /api/v1/agents HTTP/1.1\r\nHost: x\r\n\r\n"
BAD = {
    "bad request line": b"GARBAGE\r\n\r\n",
    "bad version": b"GET /health HTTP/9.x\r\n" + HOST + b"\r\n",
    "oversized header": b"GET /health HTTP/1.1\r\n"
    + HOST
    + b"X-Big: "
    + b"a" * 20_000
    + b"\r\n\r\n",
    "oversized request line": b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
    "content-length and transfer-encoding": b"POST /api/v1/messages HTTP/1.1\r\n"
    + HOST
    + b"Content-Type: application/json\r\nContent-Length: 45\r\n"
    + b"Transfer-Encoding: chunked\r\n\r\n"
    + SMUGGLE_BODY,
    "two content-lengths": b"POST /api/v1/messages HTTP/1.1\r\n"
    + HOST
    + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "invalid header character": b"GET /health HTTP/1.1\r\n" + HOST + b"X-Bad\x01: a\r\n\r\n",
    "space before colon": b"GET /health HTTP/1.1\r\n" + HOST + b"X-Bad : a\r\n\r\n",
    "undecodable gzip body": b"POST /api/v1/messages HTTP/1.1\r\n"
    + HOST
    + b"Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}",
    "broken chunked framing": b"POST /api/v1/messages HTTP/1.1\r\n"
    + HOST
    + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("data", BAD.values(), ids=BAD.keys())
async def test_malformed_http_is_a_json_envelope_and_one_warning(
    port: int, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status, headers, body = await exchange(port, data)
    assert 400 <= status < 500
    assert headers["content-type"].startswith("application/json")
    assert body["error"]["code"] in ("INVALID_REQUEST", "PAYLOAD_TOO_LARGE")
    assert body["error"]["message"].startswith("malformed HTTP request")
    assert body["error"]["details"] == {}
    refused = [r for r in caplog.records if "malformed HTTP request" in r.getMessage()]
    assert len(refused) == 1
    assert refused[0].levelno == logging.WARNING
    assert refused[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_an_unknown_expect_is_417_in_the_envelope_and_100_continue_works(port: int) -> None:
    request = b"POST /api/v1/messages HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
    status, headers, body = await exchange(
        port, request + b"Expect: 200-ok\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    assert status == 417
    assert headers["content-type"].startswith("application/json")
    assert body["error"]["code"] == "INVALID_REQUEST"
    assert "100-continue" in body["error"]["message"]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            request + b"Expect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        )
        assert await asyncio.wait_for(reader.readline(), 5) == b"HTTP/1.1 100 Continue\r\n"
        writer.write(b"{}")
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert answer.lstrip().startswith(b"HTTP/1.1 400 ")  # the body came: performative: required


async def test_the_listener_still_serves_after_malformed_requests(port: int) -> None:
    for data in BAD.values():
        await exchange(port, data)
    status, _, body = await exchange(
        port, b"GET /health HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n"
    )
    assert (status, body) == (200, {"status": "ok"})


async def test_a_flood_of_malformed_requests_cannot_flood_the_log(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """One warning per malformed request let a client write the log as fast as it could send:
    now at most MALFORMED_LOG_PER_SECOND lines a second, and one line counting the others."""
    import time

    from caxton.api.errors import MALFORMED_LOG_PER_SECOND
    from tests.support import eventually

    caplog.set_level(logging.WARNING, logger="caxton.http")
    total = 300
    started = time.monotonic()
    gate = asyncio.Semaphore(10)

    async def one(i: int) -> int:
        async with gate:
            data = BAD["bad request line"] if i % 2 else BAD["invalid header character"]
            status, _, body = await exchange(port, data)
            assert body["error"]["message"].startswith("malformed HTTP request")
            return status

    statuses = await asyncio.gather(*(one(i) for i in range(total)))
    took = time.monotonic() - started
    assert all(s == 400 for s in statuses)  # every one still answered in the envelope

    def lines() -> tuple[list[str], list[str]]:
        messages = [r.getMessage() for r in caplog.records if r.name == "caxton.http"]
        single = [m for m in messages if m.startswith("refused a malformed HTTP request")]
        summaries = [m for m in messages if "more malformed HTTP requests" in m]
        return single, summaries

    async def summed() -> bool:
        single, summaries = lines()
        counted = sum(int(m.split(" ", 1)[0]) for m in summaries)
        return len(single) + counted == total

    await eventually(summed, within=3.0)  # the last window's summary comes when it ends
    single, summaries = lines()
    windows = int(took) + 2
    assert len(single) <= MALFORMED_LOG_PER_SECOND * windows, (len(single), took)
    assert 1 <= len(summaries) <= windows
    assert "127.0.0.1" in summaries[0]
    assert not [r for r in caplog.records if r.exc_info]

    # The next window logs one by one again.
    await asyncio.sleep(1.1)  # real time: the throttle's one-second window (no clock to inject)
    caplog.clear()
    await exchange(port, BAD["bad version"])
    assert len(lines()[0]) == 1
