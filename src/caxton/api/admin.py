"""The admin listener (loopback only): health and the effective configuration.

Operators reach it on ``admin_address`` (127.0.0.1:8081 by default). Secrets are masked in
``GET /config``. Later parts add operations here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from caxton.api.browser import browser_guard_middleware, with_browser_responses
from caxton.api.errors import error_middleware
from caxton.api.health import health
from caxton.api.keys import MAX_REQUEST_SIZE, NODE, REQUEST_TIMEOUT
from caxton.api.routes import Route, add_routes, openapi_document
from caxton.config import config_to_dict
from caxton.node import Node

__all__ = ["create_admin_app"]


async def show_config(request: web.Request) -> web.Response:
    """The effective configuration, secrets masked."""
    node: Node = request.app[NODE]
    body = config_to_dict(node.config, mask_secrets=True)
    body["_source"] = str(node.config.source) if node.config.source else "embedded default"
    return web.json_response(body)


async def node_status(request: web.Request) -> web.Response:
    """The node's state and readiness checks (and the cluster link, when clustering is on)."""
    node: Node = request.app[NODE]
    readiness = node.readiness()
    body: dict[str, Any] = {
        "state": node.state.value,
        "ready": readiness.ready,
        "checks": readiness.as_dict(),
        "reasons": readiness.details,  # loopback only: with the state file's path
        "started_at": node.started_at,
    }
    if node.config.coordination.cluster_enabled:
        cluster = node.cluster
        body["cluster"] = None if cluster is None else await cluster.status()
    return web.json_response(body)


def create_admin_app(node: Node) -> web.Application:
    """The admin application for `node`."""
    # No tokens here (loopback only), so Host is always checked: DNS rebinding.
    guard = browser_guard_middleware(node.config, authenticated=False)
    app = web.Application(middlewares=[guard, error_middleware])
    app[NODE] = node
    app[REQUEST_TIMEOUT] = node.config.networking.request_timeout
    app[MAX_REQUEST_SIZE] = 1024 * 1024
    routes = [
        Route(method="GET", path="/health", handler=health, summary="Liveness", tag="admin"),
        Route(
            method="GET",
            path="/config",
            handler=show_config,
            summary="Effective configuration (secrets masked)",
            tag="admin",
        ),
        Route(method="GET", path="/status", handler=node_status, summary="Node state", tag="admin"),
    ]

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(openapi_document(routes, title="Caxton admin API"))

    routes.append(
        Route(method="GET", path="/openapi.json", handler=openapi, summary="OpenAPI", tag="admin")
    )
    routes[:] = with_browser_responses(routes)
    add_routes(app, routes)
    return app
