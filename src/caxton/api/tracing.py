"""A server span per API request, continuing the caller's trace (W3C ``traceparent``), and the
``caxton.accept`` span of a message sent through the API (its context goes into the message)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["TRACER", "start_accept", "tracing_middleware"]


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


#: The tracer messages' ``caxton.accept`` spans come from (set only with tracing on).
TRACER = web.AppKey("tracer", Tracer)


def start_accept(request: web.Request) -> tuple[Span, str] | None:
    """A ``caxton.accept`` span (child of the request's) and the ``traceparent`` the message
    carries, when the request's span is sampled; else None (the message is not traced)."""
    tracer = request.app.get(TRACER)
    if tracer is None or not get_current_span().get_span_context().trace_flags.sampled:
        return None
    span = tracer.start_span("caxton.accept", kind=SpanKind.PRODUCER)
    context = span.get_span_context()
    return span, f"00-{context.trace_id:032x}-{context.span_id:016x}-01"
