"""Liveness and readiness: `/health` never checks dependencies, `/ready` does.

Until the node has started, every other route answers ``503 UNAVAILABLE`` with ``Retry-After``
(`readiness_middleware`): a load balancer that checks ``/health`` may send a request before the
node has restored its agents, and the client should be told to retry, not get a 500 or a dead
letter for an agent not back yet. A draining node (SIGTERM) reports 503 on ``/ready`` but still
serves what reaches it, with ``Connection: close`` so that clients and balancers open their next
connection elsewhere (for ``networking.drain_delay``, then its listener closes).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from caxton.api.errors import error_response
from caxton.api.keys import NODE, PUBLIC_PATHS
from caxton.api.routes import Route
from caxton.node import Node, NodeState

__all__ = ["health_routes", "readiness_middleware"]


async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers. No dependency is checked, so it stays fast."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """Readiness: 200 when the node accepts work, 503 with the failing checks otherwise."""
    node: Node = request.app[NODE]
    readiness = node.readiness()
    if readiness.ready:
        return web.json_response({"status": "ready", "checks": readiness.as_dict()})
    details: dict[str, Any] = {"checks": readiness.as_dict()}
    message = f"the node is not ready ({node.state.value})"
    if readiness.reasons:
        details["reasons"] = readiness.reasons
        # No paths (reasons has none): /ready needs no token. The log and /status have them.
        message += ": " + "; ".join(f"{k}: {v}" for k, v in readiness.reasons.items())
    return web.json_response(
        {"error": {"code": "UNAVAILABLE", "message": message, "details": details}},
        status=503,
    )


def readiness_middleware(node: Node) -> Any:
    """503 ``UNAVAILABLE`` (``Retry-After: 1``) for work that arrives before the node has
    started (or after it has closed)."""
    serving = (NodeState.RUNNING, NodeState.DRAINING)

    @web.middleware
    async def readiness(request: web.Request, handler: Any) -> web.StreamResponse:
        if node.state not in serving and request.path not in PUBLIC_PATHS:
            closed = node.state is NodeState.CLOSED
            return error_response(
                503,
                "UNAVAILABLE",
                "the node is closed" if closed else "the node is starting; retry shortly",
                {"state": node.state.value},
                headers={"Retry-After": "1"},
            )
        response: web.StreamResponse = await handler(request)
        if node.state is NodeState.DRAINING and not response.prepared:
            response.force_close()  # the next request on this connection would find it gone
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
            summary="Readiness probe: storage open and writable, the node started",
            tag="health",
            responses={
                200: "Ready",
                503: "Not ready; details.checks says which check fails, details.reasons why",
            },
            response_schema={
                "type": "object",
                "required": ["status", "checks"],
                "properties": {
                    "status": {"const": "ready"},
                    "checks": {"type": "object", "additionalProperties": {"type": "boolean"}},
                },
            },
        ),
    ]
