"""Routes as data: one table drives both the aiohttp router and the OpenAPI document.

Each `Route` carries what a client needs to know (summary, request body, responses), so
``GET /api/v1/openapi.json`` always describes exactly the routes that exist.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from caxton._version import __version__

__all__ = ["ERROR_SCHEMA", "Route", "add_routes", "openapi_document"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One HTTP route and its documentation."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str = "node"
    #: content type -> JSON schema of the request body (empty: no body)
    request_body: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: status -> description of a success or error response
    responses: dict[int, str] = field(default_factory=lambda: {200: "OK"})
    #: query parameter name -> description
    query: dict[str, str] = field(default_factory=dict)
    #: the response schema of the first success status, if any
    response_schema: dict[str, Any] | None = None


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    """Register every route on the aiohttp router."""
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)


_PATH_PARAM = re.compile(r"{(\w+)}")


def _operation(route: Route) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(route.path)
    ]
    params += [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": text,
            "schema": {"type": "string"},
        }
        for name, text in route.query.items()
    ]
    responses: dict[str, Any] = {}
    for status, description in sorted(route.responses.items()):
        entry: dict[str, Any] = {"description": description}
        if status >= 400:
            entry["content"] = {"application/json": {"schema": ERROR_SCHEMA}}
        elif route.response_schema is not None:
            entry["content"] = {"application/json": {"schema": route.response_schema}}
        responses[str(status)] = entry
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": f"{route.method.lower()}_{_slug(route.path)}",
        "tags": [route.tag],
        "responses": responses,
    }
    if params:
        op["parameters"] = params
    if route.request_body:
        op["requestBody"] = {
            "required": True,
            "content": {ctype: {"schema": schema} for ctype, schema in route.request_body.items()},
        }
    return op


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_") or "root"


def openapi_document(routes: Sequence[Route], *, title: str = "Caxton API") -> dict[str, Any]:
    """An OpenAPI 3.1 document describing `routes`."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR_SCHEMA}},
    }
