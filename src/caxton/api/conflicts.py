"""``GET /api/v1/cluster/conflicts``: the names this node found hosted on two nodes.

Each entry: ``name``, ``winner`` and ``loser`` (node names), ``winner_deployed_at`` and
``loser_deployed_at``, ``at`` (when this node saw it; RFC 3339) and ``action`` (what became of
the loser's copy). The rule is in docs/cluster.md ("Conflicts"). Without a cluster: none.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from caxton.api.keys import NODE
from caxton.api.routes import Route
from caxton.wire.timestamps import rfc3339

__all__ = ["conflict_routes"]

_TIMES = ("winner_deployed_at", "loser_deployed_at", "at")


async def conflicts(request: web.Request) -> web.Response:
    link = request.app[NODE].cluster
    registry = None if link is None else link.registry
    found: list[dict[str, Any]] = []
    for conflict in [] if registry is None else registry.conflicts():
        entry = conflict.as_dict()
        for key in _TIMES:
            entry[key] = rfc3339(float(entry[key]))  # type: ignore[arg-type]
        found.append(entry)
    return web.json_response({"conflicts": found})


_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "conflicts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "winner": {"type": "string"},
                    "loser": {"type": "string"},
                    **{key: {"type": "string"} for key in _TIMES},
                    "action": {"type": "string"},
                },
            },
        }
    },
}


def conflict_routes() -> list[Route]:
    return [
        Route(
            method="GET",
            path="/api/v1/cluster/conflicts",
            handler=conflicts,
            summary="Agent names found on two nodes, who kept them and what became of the loser",
            tag="cluster",
            response_schema=_SCHEMA,
        )
    ]
