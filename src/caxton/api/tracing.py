"""A server span per API request, continuing the caller's trace (W3C ``traceparent``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["tracing_middleware"]


def tracing_middleware(tracer: Tracer) -> Any:
    """A middleware that wraps each request in a span named ``METHOD /route/{template}``."""
    propagator = TraceContextTextMapPropagator()

    @web.middleware
    async def trace_request(request: web.Request, handler: Any) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        context = propagator.extract(dict(request.headers))
        with tracer.start_as_current_span(
            f"{request.method} {route}",
            context=context,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": request.method,
                "http.route": route,
                "url.path": request.path,
            },
        ) as span:
            response: web.StreamResponse = await handler(request)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return response

    return trace_request
