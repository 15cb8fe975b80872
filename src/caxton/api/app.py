"""The HTTP API application: routes as one table, middlewares as one list.

`create_app(node, ...)` builds the aiohttp application that serves ``bind_address``. Handlers
are thin: they parse, call one core method and serialise. Later parts (agents, messages,
cluster) add their route tables here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from opentelemetry.trace import Tracer

from caxton.api.agents import agent_routes
from caxton.api.browser import (
    BODY_TYPES,
    body_types,
    browser_guard_middleware,
    with_browser_responses,
)
from caxton.api.cluster import cluster_routes
from caxton.api.conflicts import conflict_routes
from caxton.api.debug import debug_routes
from caxton.api.errors import error_middleware
from caxton.api.events import event_routes, setup_event_streams
from caxton.api.forwarded import forwarded_middleware
from caxton.api.health import health_routes, readiness_middleware
from caxton.api.keys import MAX_REQUEST_SIZE, NODE, PUBLIC_PATHS, REQUEST_TIMEOUT
from caxton.api.messages import message_routes
from caxton.api.routes import Guards, Route, add_routes, openapi_document
from caxton.api.security import security_middlewares
from caxton.api.stats import setup_stats_history, stats_routes
from caxton.api.tracing import TRACER, tracing_middleware
from caxton.api.ui import UI_PATHS, ui_routes
from caxton.node import Node

__all__ = ["RequestObserver", "create_app"]

#: Called once per request with (method, route template, status, seconds).
RequestObserver = Callable[[str, str, int, float], None]

access_log = logging.getLogger("caxton.http")


def _route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _observe_middleware(observer: RequestObserver | None) -> Any:
    @web.middleware
    async def observe(request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response: web.StreamResponse = await handler(request)
            status = response.status
            return response
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(request)
            if observer is not None:
                observer(request.method, route, status, elapsed)
            if access_log.isEnabledFor(logging.DEBUG):
                access_log.debug(
                    "%s %s %d %.1fms",
                    request.method,
                    request.path,
                    status,
                    elapsed * 1000,
                    extra={
                        "method": request.method,
                        "path": request.path,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "remote": request.remote,
                    },
                )

    return observe


def create_app(
    node: Node,
    *,
    observer: RequestObserver | None = None,
    tracer: Tracer | None = None,
) -> web.Application:
    """The API application for `node`.

    Middlewares, outermost first: the client's address behind trusted proxies, request metrics
    and access log, the request span, 503 until the node has started, the browser guard
    (Origin, Content-Type, Host: `caxton.api.browser`), CORS, rate limits and authentication
    (as `[security]` asks), then the error envelope.
    """
    networking = node.config.networking
    middlewares: list[Any] = []
    if node.config.security.trusted_proxies:  # first: everything after sees the real client
        middlewares.append(forwarded_middleware(node.config.security.trusted_proxies))
    middlewares.append(_observe_middleware(observer))
    if tracer is not None:
        middlewares.append(tracing_middleware(tracer))
    middlewares.append(readiness_middleware(node))
    middlewares.append(browser_guard_middleware(node.config))
    middlewares += security_middlewares(node.config.security)
    middlewares.append(error_middleware)
    if node.config.coordination.cluster_enabled:  # agents hosted on other nodes
        from caxton.api.remote import remote_middleware

        middlewares.append(remote_middleware)
    app = web.Application(
        middlewares=middlewares,
        client_max_size=networking.max_request_size,
    )
    app[NODE] = node
    if tracer is not None:
        app[TRACER] = tracer
    app[REQUEST_TIMEOUT] = networking.request_timeout
    app[MAX_REQUEST_SIZE] = networking.max_request_size

    setup_event_streams(app)
    setup_stats_history(app)

    routes: list[Route] = with_browser_responses(
        [
            *health_routes(),
            *agent_routes(),
            *debug_routes(),
            *message_routes(),
            *event_routes(),
            *cluster_routes(),
            *conflict_routes(),
            *stats_routes(),
            *ui_routes(),
        ]
    )
    app[BODY_TYPES] = body_types(routes)

    security = node.config.security
    guards = Guards(
        public_paths=PUBLIC_PATHS | UI_PATHS,
        auth_header=security.api_key_header if security.auth_enabled else None,
        rate_limited=security.rate_limit_enabled,
    )

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(openapi_document(routes, guards=guards))

    routes.append(
        Route(
            method="GET",
            path="/api/v1/openapi.json",
            handler=openapi,
            summary="This API's OpenAPI document",
            tag="meta",
        )
    )
    add_routes(app, routes)
    return app
