"""The Prometheus listener: ``GET /metrics`` on ``metrics_address``."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from caxton.api.errors import error_middleware
from caxton.api.keys import MAX_REQUEST_SIZE, REQUEST_TIMEOUT
from caxton.observability import render_metrics

__all__ = ["create_metrics_app"]


def create_metrics_app(registry: CollectorRegistry, *, request_timeout: float) -> web.Application:
    """An application serving `registry` in the Prometheus text format."""
    app = web.Application(middlewares=[error_middleware])
    app[REQUEST_TIMEOUT] = request_timeout
    app[MAX_REQUEST_SIZE] = 1024 * 1024

    async def metrics(request: web.Request) -> web.Response:
        body, content_type = render_metrics(registry, request.headers.get("Accept"))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    return app
