"""Liveness and readiness: `/health` never checks dependencies, `/ready` does."""

from __future__ import annotations

from aiohttp import web

from caxton.api.keys import NODE
from caxton.api.routes import Route
from caxton.node import Node

__all__ = ["health_routes"]


async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers. No dependency is checked, so it stays fast."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """Readiness: 200 when the node accepts work, 503 with the failing checks otherwise."""
    node: Node = request.app[NODE]
    readiness = node.readiness()
    if readiness.ready:
        return web.json_response({"status": "ready", "checks": readiness.as_dict()})
    return web.json_response(
        {
            "error": {
                "code": "UNAVAILABLE",
                "message": f"the node is not ready ({node.state.value})",
                "details": {"checks": readiness.as_dict()},
            }
        },
        status=503,
    )


def health_routes() -> list[Route]:
    """The `/health` and `/ready` routes."""
    return [
        Route(
            method="GET",
            path="/health",
            handler=health,
            summary="Liveness probe (no dependency checks)",
            tag="health",
            response_schema={"type": "object", "properties": {"status": {"type": "string"}}},
        ),
        Route(
            method="GET",
            path="/ready",
            handler=ready,
            summary="Readiness probe: storage open and the node started",
            tag="health",
            responses={200: "Ready", 503: "Not ready; details.checks says which check fails"},
        ),
    ]
