"""``GET /api/v1/events``: the live event stream over a WebSocket.

Query: ``agent=`` (messages from or to it, and its lifecycle events), ``performative=``
(hyphen spelling accepted), ``conversation=``, ``heartbeat=`` (default 15s, 1s to 5m) and
``max_queue=`` (events buffered for this subscriber, default 1000).

Frames are JSON text, one event each (see docs/api.md): first ``{"type": "subscribed", ...}``,
then ``message``, ``agent`` and ``dead_letter`` events as the bus publishes them, and a
``{"type": "heartbeat", "time"}`` frame after ``heartbeat`` seconds without another frame
(aiohttp also pings at that interval). Frames from the client are ignored.

A subscriber that falls ``max_queue`` events behind is dropped by the bus (the router never
waits for it): its socket is closed with code `CLOSE_TOO_SLOW` (4008). On node shutdown the
socket is closed with 1001 (going away). The stream is exempt from ``request_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from typing import Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from caxton.api.agent_forms import query_int
from caxton.api.errors import ApiError
from caxton.api.messages import messaging_of
from caxton.api.routes import Route, integer
from caxton.config import parse_duration
from caxton.errors import InvalidRequest
from caxton.messaging import Subscription
from caxton.wire.codec import normalise_performative
from caxton.wire.timestamps import rfc3339

__all__ = ["CLOSE_TOO_SLOW", "EVENTS_PROTOCOL", "close_event_streams", "event_routes"]

#: Close code for a subscriber the bus dropped because it read too slowly.
CLOSE_TOO_SLOW = 4008
#: The subprotocol the stream answers with when a client offers it (browsers do, with their
#: token as a second one: `caxton.api.security.websocket_token`).
EVENTS_PROTOCOL = "caxton.events"
DEFAULT_HEARTBEAT = 15.0
MIN_HEARTBEAT, MAX_HEARTBEAT = 1.0, 300.0
#: How often the handler looks for a drop while the sender is blocked on a full socket.
_DROP_CHECK = 0.25
#: How long a closing handshake may take before the connection is cut.
_CLOSE_TIMEOUT = 5.0
_FILTERS = ("agent", "performative", "conversation")
_QUERY = frozenset({*_FILTERS, "heartbeat", "max_queue"})
_encode = msgspec.json.Encoder().encode

STREAMS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("event_streams")


def _heartbeat(request: web.Request) -> float:
    text = request.query.get("heartbeat")
    if text is None:
        return DEFAULT_HEARTBEAT
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise InvalidRequest(f"heartbeat: {exc}", details={"field": "heartbeat"}) from None
    if not MIN_HEARTBEAT <= seconds <= MAX_HEARTBEAT:
        raise InvalidRequest(
            f"heartbeat: must be between {MIN_HEARTBEAT:g}s and {MAX_HEARTBEAT:g}s",
            details={"field": "heartbeat"},
        )
    return seconds


def _filters(request: web.Request) -> dict[str, str | None]:
    unknown = sorted(set(request.query) - _QUERY)
    if unknown:
        raise InvalidRequest(
            f"unknown query parameter(s) {', '.join(unknown)}; expected "
            + ", ".join(sorted(_QUERY)),
            details={"fields": unknown},
        )
    filters: dict[str, str | None] = {name: request.query.get(name) or None for name in _FILTERS}
    if filters["performative"] is not None:
        performative = normalise_performative(filters["performative"])
        if performative is None:
            raise InvalidRequest(
                f"performative: unknown performative {filters['performative']!r}",
                details={"field": "performative"},
            )
        filters["performative"] = performative
    return filters


async def _send(ws: web.WebSocketResponse, event: dict[str, Any]) -> None:
    await ws.send_frame(_encode(event), WSMsgType.TEXT)


async def _pump(ws: web.WebSocketResponse, sub: Subscription, heartbeat: float) -> None:
    """Send events as they come, and a heartbeat frame after ``heartbeat`` s of silence."""
    while True:
        event = sub.get_nowait()
        if event is None:
            if sub.closed:
                return
            try:
                async with asyncio.timeout(heartbeat):
                    event = await anext(sub)
            except TimeoutError:
                await _send(ws, {"type": "heartbeat", "time": rfc3339(time.time())})
                continue
            except StopAsyncIteration:
                return
        await _send(ws, event)


async def _read(ws: web.WebSocketResponse) -> None:
    """Consume the client's frames (pongs, close) until the socket closes."""
    async for _msg in ws:
        pass


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/events`` (WebSocket upgrade): the filtered live stream."""
    filters = _filters(request)
    heartbeat = _heartbeat(request)
    max_queue = query_int(request, "max_queue", 1000, 10, 100_000)
    messaging = messaging_of(request)
    ws = web.WebSocketResponse(
        heartbeat=heartbeat,
        compress=False,
        max_msg_size=64 * 1024,
        protocols=(EVENTS_PROTOCOL,),  # chosen when offered (a browser's token rides beside it)
    )
    if not ws.can_prepare(request).ok:
        raise ApiError(
            426,
            "INVALID_REQUEST",
            "this is a WebSocket endpoint: connect with Upgrade: websocket",
        )
    await ws.prepare(request)
    request.app[STREAMS].add(ws)
    sub = messaging.subscribe(
        agent=filters["agent"],
        performative=filters["performative"],
        conversation=filters["conversation"],
        max_queue=max_queue,
    )
    try:
        await _send(ws, {"type": "subscribed", "filters": filters, "heartbeat": heartbeat})
        # The stream's two tasks live in this scope: the group cancels and awaits both on the
        # way out, and an error of either reaches the handler (aiohttp logs it) unless it is
        # the client going away.
        async with asyncio.TaskGroup() as group:
            tasks = (
                group.create_task(_pump(ws, sub, heartbeat), name="caxton-events-pump"),
                group.create_task(_read(ws), name="caxton-events-read"),
            )
            while not sub.dropped:
                done, _ = await asyncio.wait(
                    tasks, timeout=_DROP_CHECK, return_when=asyncio.FIRST_COMPLETED
                )
                if done:
                    break
            sub.close()
            for task in tasks:
                task.cancel()
        if not ws.closed:
            code: int = WSCloseCode.OK
            message = b""
            if sub.dropped:
                code, message = CLOSE_TOO_SLOW, b"too slow: events were dropped"
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await ws.close(code=code, message=message)
    except* (ConnectionError, TimeoutError):
        pass
    finally:
        sub.close()
    return ws


async def close_event_streams(app: web.Application) -> None:
    """On shutdown: close every open stream with 1001 (going away)."""
    streams = app[STREAMS]
    for ws in list(streams):
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"the node is stopping")


def setup_event_streams(app: web.Application) -> None:
    """Track open streams so shutdown can close them."""
    streams: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
    app[STREAMS] = streams
    app.on_shutdown.append(close_event_streams)


def event_routes() -> list[Route]:
    """The WebSocket route."""
    return [
        Route(
            method="GET",
            path="/api/v1/events",
            handler=events,
            summary="Live events over a WebSocket (messages, agent lifecycle, dead letters)",
            tag="events",
            responses={
                101: "Switching to the WebSocket: JSON text frames, one event each; close "
                f"code {CLOSE_TOO_SLOW} means the subscriber was dropped for reading too slowly",
                400: "INVALID_REQUEST: a bad filter, heartbeat or max_queue",
                426: "INVALID_REQUEST: not a WebSocket upgrade (connect with Upgrade: websocket)",
            },
            query={
                "agent": "only messages from or to this agent, and its lifecycle events",
                "performative": "only messages with this performative",
                "conversation": "only events of this conversation",
                "heartbeat": f"heartbeat interval (default {DEFAULT_HEARTBEAT:g}s, 1s to 5m)",
                "max_queue": integer(
                    "events buffered for this subscriber before it is dropped "
                    "(default 1000, 10 to 100000)",
                    10,
                    100_000,
                ),
            },
        )
    ]


__all__ += ["setup_event_streams"]
