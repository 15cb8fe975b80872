"""Liveness and readiness: `/health` never checks dependencies, `/ready` does.

While the node is starting or draining, every other route answers ``503 UNAVAILABLE`` with
``Retry-After`` (`readiness_middleware`): a load balancer that checks ``/health`` may send a
request before the node has restored its agents or after it began to shut down, and the
client should be told to retry, not get a 500 or a dead letter for an agent not back yet.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from caxton.api.errors import error_response
from caxton.api.keys import NODE
from caxton.api.routes import Route
from caxton.node import Node, NodeState

__all__ = ["ALWAYS_SERVED", "health_routes", "readiness_middleware"]

#: Routes served whatever the node's state.
ALWAYS_SERVED = frozenset({"/health", "/ready", "/api/v1/openapi.json"})


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


def readiness_middleware(node: Node) -> Any:
    """503 ``UNAVAILABLE`` (``Retry-After: 1``) for work that arrives while the node is not
    running; requests already being handled when a drain begins are not affected."""

    @web.middleware
    async def readiness(request: web.Request, handler: Any) -> web.StreamResponse:
        if node.state is not NodeState.RUNNING and request.path not in ALWAYS_SERVED:
            doing = (
                "starting"
                if node.state in (NodeState.UNSTARTED, NodeState.STARTING)
                else ("shutting down")
            )
            return error_response(
                503,
                "UNAVAILABLE",
                f"the node is {doing}; retry shortly",
                {"state": node.state.value},
                headers={"Retry-After": "1"},
            )
        response: web.StreamResponse = await handler(request)
        return response

    return readiness


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
