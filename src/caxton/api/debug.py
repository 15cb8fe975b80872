"""``GET /api/v1/agents/{name}/debug``: everything ``caxton debug --agent-id NAME`` prints.

State, kind, version, limits, memory, mailbox depth and capacity, counters, whether it can be
hibernated (and why not), the last errors (error and warning log lines, ``handler_failed`` dead
letters), the agent's recent dead letters, its recent messages and the tail of its log.

Recent messages are read back from the conversation history the node keeps anyway (see
`caxton.messaging.recent`), so they are there on the first call, including what happened
before anyone asked.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from caxton.api.agent_forms import query_int
from caxton.api.agent_schemas import AGENT_SCHEMA
from caxton.api.keys import NODE
from caxton.api.messages import dead_letter_dict, json_response, messaging_of
from caxton.api.routes import Route
from caxton.messaging import Messaging
from caxton.messaging.recent import SCAN, recent_messages
from caxton.wire.timestamps import rfc3339

__all__ = ["debug_routes"]

#: Most recent messages one call shows.
RING = 100
#: Dead letters scanned (the newest) for the agent's own.
DEAD_LETTER_SCAN = 500
LAST_ERRORS = 10


async def _dead_letters(messaging: Messaging, name: str) -> list[dict[str, Any]]:
    _, total = await messaging.dead_letters(offset=0, limit=1)
    letters, _ = await messaging.dead_letters(
        offset=max(0, total - DEAD_LETTER_SCAN), limit=DEAD_LETTER_SCAN
    )
    return [dead_letter_dict(d) for d in letters if name in (d.receiver, d.sender)]


def _hibernation(kind: str, unsaved_state: str | None) -> dict[str, Any]:
    """Whether the runtime may hibernate the agent (snapshot its memory and globals)."""
    if kind != "reactor":
        return {"possible": False, "reason": "a command agent keeps no instance between messages"}
    if unsaved_state is not None:
        return {"possible": False, "reason": f"never hibernated: {unsaved_state}"}
    return {"possible": True, "reason": None}


async def debug(request: web.Request) -> web.Response:
    """``GET /api/v1/agents/{name}/debug?messages=20&logs=50``."""
    name = request.match_info["name"]
    n_messages = query_int(request, "messages", 20, 0, RING)
    n_logs = query_int(request, "logs", 50, 0, 10_000)
    agents = request.app[NODE].agents
    agent = await agents.get(name)
    info = agent.as_dict()
    messaging = messaging_of(request)
    lines = agents.logs(name, max(n_logs, 200))
    letters = await _dead_letters(messaging, name)
    recent = await recent_messages(messaging, name, n_messages)
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
            "hibernation": _hibernation(info["kind"], agent.unsaved_state),
            "last_errors": errors[-LAST_ERRORS:],
            "dead_letters": letters[-LAST_ERRORS:],
            "recent_messages": {
                "messages": recent.messages,
                "scanned": recent.scanned,
                "complete": recent.complete,
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
        "hibernation": {
            "type": "object",
            "description": "possible (whether an idle agent is hibernated: its memory and "
            "globals saved, its instance dropped) and reason (why not, or null)",
        },
        "last_errors": {"type": "array", "description": "time, source, level, text"},
        "dead_letters": {"type": "array", "description": "the agent's latest dead letters"},
        "recent_messages": {
            "type": "object",
            "description": "messages (from or to the agent, oldest first, from the message "
            f"history), scanned (history messages looked at, at most {SCAN}) and complete "
            "(true when that was the whole history)",
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
                "node": "cluster: the copy on this node, whichever node hosts the agent",
            },
            response_schema=_DEBUG_SCHEMA,
        )
    ]
