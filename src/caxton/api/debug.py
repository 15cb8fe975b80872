"""``GET /api/v1/agents/{name}/debug``: everything ``caxton debug --agent-id NAME`` prints.

State, kind, version, limits, memory, mailbox depth and capacity, counters, the last errors
(error and warning log lines, ``handler_failed`` dead letters), the agent's recent dead
letters, its recent messages and the tail of its log.

Recent messages come from a `Recorder`: the first debug request for an agent subscribes to the
event bus for that agent and keeps its last `RING` messages, until nobody has asked for
`IDLE` seconds (at most `MAX_RECORDED` agents at once). Recording is lazy because a bus
subscriber makes the node decode every message; the answer says since when it records.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from caxton.agents._model import rfc3339
from caxton.api.agent_forms import query_int
from caxton.api.agent_schemas import AGENT_SCHEMA
from caxton.api.keys import NODE
from caxton.api.messages import dead_letter_dict, json_response, messaging_of
from caxton.api.routes import Route
from caxton.messaging import Messaging, Subscription

__all__ = ["Recorder", "debug_routes", "setup_debug"]

RING = 100
IDLE = 600.0
MAX_RECORDED = 32
#: Dead letters scanned (the newest) for the agent's own.
DEAD_LETTER_SCAN = 500
LAST_ERRORS = 10


@dataclass(slots=True)
class _Recording:
    name: str
    sub: Subscription
    since: float
    touched: float
    ring: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RING))
    task: asyncio.Task[None] | None = None


class Recorder:
    """Recent messages per debugged agent, fed by the event bus (loop thread only)."""

    def __init__(self) -> None:
        self._recordings: dict[str, _Recording] = {}

    def recent(self, messaging: Messaging, name: str) -> tuple[list[dict[str, Any]], float]:
        """The agent's recorded messages (oldest first) and since when; starts recording."""
        now = time.monotonic()
        rec = self._recordings.get(name)
        if rec is None:
            if len(self._recordings) >= MAX_RECORDED:
                oldest = min(self._recordings.values(), key=lambda r: r.touched)
                self._stop(oldest)
            rec = _Recording(name, self._subscribe(messaging, name), time.time(), now)
            rec.task = asyncio.get_running_loop().create_task(self._run(messaging, rec))
            self._recordings[name] = rec
        rec.touched = now
        return list(rec.ring), rec.since

    @staticmethod
    def _subscribe(messaging: Messaging, name: str) -> Subscription:
        return messaging.subscribe(agent=name, max_queue=10_000)

    async def _run(self, messaging: Messaging, rec: _Recording) -> None:
        while True:
            idle = IDLE - (time.monotonic() - rec.touched)
            try:
                async with asyncio.timeout(max(idle, 0.0)):
                    event = await anext(rec.sub)
            except TimeoutError:
                self._stop(rec)
                return
            except StopAsyncIteration:
                if not rec.sub.dropped:
                    return
                rec.sub = self._subscribe(messaging, rec.name)
                continue
            if event.get("type") == "message":
                rec.ring.append(event)

    def _stop(self, rec: _Recording) -> None:
        rec.sub.close()
        self._recordings.pop(rec.name, None)
        if rec.task is not None and rec.task is not asyncio.current_task():
            rec.task.cancel()

    async def aclose(self) -> None:
        """Stop every recording."""
        tasks = [r.task for r in self._recordings.values() if r.task is not None]
        for rec in list(self._recordings.values()):
            self._stop(rec)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


RECORDER = web.AppKey("debug_recorder", Recorder)


def setup_debug(app: web.Application) -> None:
    """Give the app its recorder, stopped on cleanup."""
    app[RECORDER] = Recorder()

    async def stop(app: web.Application) -> None:
        await app[RECORDER].aclose()

    app.on_cleanup.append(stop)


async def _dead_letters(messaging: Messaging, name: str) -> list[dict[str, Any]]:
    _, total = await messaging.dead_letters(offset=0, limit=1)
    letters, _ = await messaging.dead_letters(
        offset=max(0, total - DEAD_LETTER_SCAN), limit=DEAD_LETTER_SCAN
    )
    return [dead_letter_dict(d) for d in letters if name in (d.receiver, d.sender)]


async def debug(request: web.Request) -> web.Response:
    """``GET /api/v1/agents/{name}/debug?messages=20&logs=50``."""
    name = request.match_info["name"]
    n_messages = query_int(request, "messages", 20, 0, RING)
    n_logs = query_int(request, "logs", 50, 0, 10_000)
    agents = request.app[NODE].agents
    info = (await agents.get(name)).as_dict()
    messaging = messaging_of(request)
    lines = agents.logs(name, max(n_logs, 200))
    letters = await _dead_letters(messaging, name)
    recent, since = request.app[RECORDER].recent(messaging, name)
    errors = [
        {"time": rfc3339(line.time), "source": "log", "level": line.level, "text": line.text}
        for line in lines
        if line.level in ("error", "warn")
    ]
    errors += [
        {
            "time": d["created_at"],
            "source": "dead_letter",
            "level": "error",
            "text": f"{d['reason']}: {d['details'].get('error') or d['message_id']}",
        }
        for d in letters
        if d["reason"] == "handler_failed"
    ]
    errors.sort(key=lambda e: e["time"])
    limits = info["limits"]
    return json_response(
        {
            **{k: info[k] for k in ("name", "state", "kind", "version", "last_error")},
            "limits": limits,
            "memory": {"used_bytes": info["memory_bytes"], "limit_bytes": limits["memory_bytes"]},
            "mailbox": {"depth": info["mailbox_depth"], "capacity": limits["mailbox_capacity"]},
            "counters": info["counters"],
            "last_active": info["last_active"],
            "last_errors": errors[-LAST_ERRORS:],
            "dead_letters": letters[-LAST_ERRORS:],
            "recent_messages": {
                "recording_since": rfc3339(since),
                "messages": recent[-n_messages:] if n_messages else [],
            },
            "logs": [
                {"time": rfc3339(line.time), "level": line.level, "text": line.text}
                for line in (lines[-n_logs:] if n_logs else [])
            ],
        }
    )


_DEBUG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **{k: AGENT_SCHEMA["properties"][k] for k in ("name", "state", "kind", "version")},
        "limits": AGENT_SCHEMA["properties"]["limits"],
        "memory": {"type": "object", "description": "used_bytes, limit_bytes"},
        "mailbox": {"type": "object", "description": "depth, capacity"},
        "counters": AGENT_SCHEMA["properties"]["counters"],
        "last_error": {"type": ["string", "null"]},
        "last_active": {"type": ["string", "null"]},
        "last_errors": {"type": "array", "description": "time, source, level, text"},
        "dead_letters": {"type": "array", "description": "the agent's latest dead letters"},
        "recent_messages": {
            "type": "object",
            "description": "recording_since and messages (from or to the agent, oldest first)",
        },
        "logs": {"type": "array", "description": "time, level, text; oldest first"},
    },
}


def debug_routes() -> list[Route]:
    """The debug route."""
    return [
        Route(
            method="GET",
            path="/api/v1/agents/{name}/debug",
            handler=debug,
            summary="What `caxton debug --agent-id` prints: state, limits, mailbox, errors, "
            "recent messages, log tail",
            tag="agents",
            responses={200: "The agent's debug view", 404: "AGENT_NOT_FOUND"},
            query={
                "messages": f"recent messages to show (default 20, at most {RING})",
                "logs": "log lines to show (default 50)",
            },
            response_schema=_DEBUG_SCHEMA,
        )
    ]
