"""Read the nats-server monitoring endpoints (``/healthz``, ``/varz``, ``/routez``) on loopback.

A tiny HTTP/1.0 GET over asyncio streams: the core does not import an HTTP client library, and
these answers are small JSON documents from a server on this machine.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

__all__ = ["get", "get_json"]


async def get(port: int, path: str) -> tuple[int, bytes]:
    """(status, body) of ``GET http://127.0.0.1:<port><path>``.

    Raises:
        OSError: nothing listens there (yet), or the connection broke.

    The caller bounds the time (``asyncio.timeout``).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode("ascii"))
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise OSError(f"not an HTTP answer from 127.0.0.1:{port}")
    return int(status_line[1]), body


async def get_json(port: int, path: str) -> dict[str, Any]:
    """The JSON document at `path` (an OSError unless the status is 200)."""
    status, body = await get(port, path)
    if status != 200:
        raise OSError(f"GET {path} on 127.0.0.1:{port} answered {status}")
    document = json.loads(body)
    if not isinstance(document, dict):
        raise OSError(f"GET {path} on 127.0.0.1:{port} answered no JSON object")
    return document
