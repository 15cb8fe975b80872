"""``GET /api/v1/stats``: this node's counters since it started, for the dashboard.

The same numbers as the Prometheus metrics of the runtime and the messaging layer, as one JSON
document on the API listener (the metrics listener is often not reachable from a browser). A
client reads it twice and divides: messages per second, mean handling time over the interval.
``history`` has the counters every `SAMPLE_SECONDS` over the last `HISTORY_SAMPLES` samples
(ten minutes), taken by a task the app owns, so a page opened now can draw the last minutes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from caxton.api.keys import NODE
from caxton.api.messages import messaging_of
from caxton.api.routes import Route
from caxton.node import Node, NodeState
from caxton.tasks import TaskSet
from caxton.wire.timestamps import rfc3339

__all__ = ["HISTORY_SAMPLES", "SAMPLE_SECONDS", "setup_stats_history", "stats_routes"]

SAMPLE_SECONDS = 5.0
HISTORY_SAMPLES = 120  # ten minutes
HISTORY = web.AppKey("stats_history", deque[dict[str, Any]])

_COUNT = {"type": "integer", "minimum": 0}
_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["time", "started_at", "messages", "processing", "agents", "dead_letters"],
    "properties": {
        "time": {"type": "string"},
        "started_at": {"type": ["string", "null"]},
        "messages": {
            "type": "object",
            "properties": {"sent": _COUNT, "handled": _COUNT, "failed": _COUNT},
        },
        "processing": {
            "type": "object",
            "properties": {
                "count": _COUNT,
                "seconds_sum": {"type": "number"},
                "bounds": {"type": "array", "items": {"type": "number"}},
                "buckets": {"type": "array", "items": _COUNT},
            },
        },
        "agents": {"type": "object"},
        "mailbox_depth": _COUNT,
        "memory_bytes": _COUNT,
        "dead_letters": {"type": "object", "additionalProperties": _COUNT},
        "history": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "time": {"type": "string"},
                    "sent": _COUNT,
                    "handled": _COUNT,
                    "seconds_sum": {"type": "number"},
                },
            },
        },
    },
}


def _sample(runtime: Any, messaging: Any) -> dict[str, Any]:
    """The counters a history entry keeps (from the runtime's and the messaging layer's
    statistics), now."""
    return {
        "time": rfc3339(time.time()),
        "sent": messaging.submitted + messaging.agent_sent,
        "handled": sum(runtime.executions.values()),
        "seconds_sum": runtime.duration_sum,
    }


def setup_stats_history(app: web.Application) -> None:
    """Sample the node's counters every `SAMPLE_SECONDS` while the app runs (the app's
    cleanup context owns the task)."""
    history: deque[dict[str, Any]] = deque(maxlen=HISTORY_SAMPLES)
    app[HISTORY] = history

    async def sampler() -> None:
        node = app[NODE]
        while True:
            if node.state is NodeState.RUNNING:
                history.append(_sample(node.runtime.statistics(), node.messaging.statistics()))
            await asyncio.sleep(SAMPLE_SECONDS)

    async def run(app: web.Application) -> AsyncIterator[None]:
        tasks = TaskSet("the stats history")
        tasks.service(sampler(), "caxton-stats-history")
        yield
        await tasks.aclose()

    app.cleanup_ctx.append(run)


async def show_stats(request: web.Request) -> web.Response:
    """This node's counters (messages, handling time, agents, dead letters) since start."""
    node: Node = request.app[NODE]
    messaging = messaging_of(request).statistics()
    runtime = node.runtime.statistics()
    now = _sample(runtime, messaging)
    handled = now["handled"]
    body = {
        "time": now["time"],
        "started_at": rfc3339(node.started_at) if node.started_at else None,
        "messages": {
            "sent": now["sent"],
            "handled": handled,
            "failed": handled - runtime.executions.get("ok", 0),
        },
        "processing": {
            "count": handled,
            "seconds_sum": now["seconds_sum"],
            "bounds": list(runtime.duration_bounds),
            "buckets": list(runtime.duration_buckets),
        },
        "agents": {
            "total": runtime.agents_total,
            "active": runtime.agents_active,
            "hibernated": runtime.agents_hibernated,
            "failed": runtime.agents_failed,
        },
        "mailbox_depth": runtime.mailbox_depth,
        "memory_bytes": runtime.memory_bytes,
        "dead_letters": dict(messaging.dead_letters),
        "history": list(request.app.get(HISTORY, ())),
    }
    return web.json_response(body)


def stats_routes() -> list[Route]:
    return [
        Route(
            method="GET",
            path="/api/v1/stats",
            handler=show_stats,
            summary="This node's message, handling-time, agent and dead-letter counters",
            response_schema=_SCHEMA,
        )
    ]
