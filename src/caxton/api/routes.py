"""Routes as data: one table drives both the aiohttp router and the OpenAPI document.

Each `Route` carries what a client needs to know (summary, request body, responses), so
``GET /api/v1/openapi.json`` always describes exactly the routes that exist.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import HttpVersion11, web

from caxton._version import __version__

__all__ = ["ERROR_SCHEMA", "Guards", "Query", "Route", "add_routes", "integer", "openapi_document"]

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


@dataclass(frozen=True, slots=True)
class Query:
    """A query parameter's description and JSON schema (a plain string is a string)."""

    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


def integer(description: str, low: int, high: int) -> Query:
    """A whole-number query parameter in ``[low, high]`` (ASCII digits; `query_int`)."""
    return Query(description, {"type": "integer", "minimum": low, "maximum": high})


@dataclass(frozen=True, slots=True, kw_only=True)
class Guards:
    """What the middlewares in front of every node route may answer, for the document.

    ``auth_header`` (authentication is on): 401, and the bearer and API-key schemes;
    ``rate_limited``: 429 ``RATE_LIMITED``. Always: 503 (the node is starting, or the request
    took longer than ``request_timeout``). The browser guard's 403/415/421 are added to the
    routes themselves (`caxton.api.browser.with_browser_responses`).
    """

    public_paths: frozenset[str]
    auth_header: str | None = None
    rate_limited: bool = False


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
    #: query parameter name -> description (a string), or its `Query`
    query: Mapping[str, str | Query] = field(default_factory=dict)
    #: the response schema of every success status, if any ...
    response_schema: dict[str, Any] | None = None
    #: ... unless this gives one for that status
    status_schemas: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: path parameter name -> its JSON schema (default: any string)
    path_schemas: Mapping[str, dict[str, Any]] = field(default_factory=dict)


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    """Register every route on the aiohttp router."""
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler, expect_handler=_expect)


async def _expect(request: web.Request) -> None:
    """aiohttp's ``Expect`` handling (it runs before any middleware), with a JSON 417."""
    expect = request.headers.get("Expect", "")
    if request.version != HttpVersion11:
        return
    if expect.lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the real response has not started
        return
    body = {
        "error": {
            "code": "INVALID_REQUEST",
            "message": f"unknown Expect: {expect[:80]!r}; only 100-continue is supported",
            "details": {},
        }
    }
    raise web.HTTPExpectationFailed(text=json.dumps(body), content_type="application/json")


_PATH_PARAM = re.compile(r"{(\w+)}")


def _query(name: str, spec: str | Query) -> dict[str, Any]:
    query = spec if isinstance(spec, Query) else Query(spec)
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": query.description,
        "schema": query.schema,
    }


def _statuses(route: Route, guards: Guards | None) -> dict[int, str]:
    """The route's own statuses plus what the framework around it may answer."""
    statuses = dict(route.responses)
    has_params = bool(route.query or _PATH_PARAM.search(route.path))
    extra: dict[int, str] = {}
    if has_params or route.request_body:
        extra[400] = "INVALID_REQUEST: a malformed parameter or body (details.field names it)"
    if _PATH_PARAM.search(route.path):
        extra[404] = "NOT_FOUND: nothing has that name or id"
    if route.request_body:
        extra[413] = "PAYLOAD_TOO_LARGE: the body is above networking.max_request_size"
        extra[415] = "INVALID_REQUEST: a Content-Type (or charset) this route does not take"
    if guards is not None and route.path not in guards.public_paths:
        if guards.auth_header is not None:
            extra[401] = "UNAUTHORIZED: no token, or not a valid one"
        if guards.rate_limited:
            extra[429] = "RATE_LIMITED: too many requests from this client (see Retry-After)"
        extra[503] = "UNAVAILABLE: the node is starting, or the request took longer than "
        extra[503] += "networking.request_timeout"
    for status, description in extra.items():
        statuses.setdefault(status, description)
    return statuses


def _operation(route: Route, guards: Guards | None = None) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": route.path_schemas.get(name, {"type": "string"}),
        }
        for name in _PATH_PARAM.findall(route.path)
    ]
    params += [_query(name, spec) for name, spec in route.query.items()]
    responses: dict[str, Any] = {}
    for status, description in sorted(_statuses(route, guards).items()):
        entry: dict[str, Any] = {"description": description}
        schema = route.status_schemas.get(status, route.response_schema)
        if status >= 400:
            entry["content"] = {"application/json": {"schema": ERROR_SCHEMA}}
        elif schema is not None:
            entry["content"] = {"application/json": {"schema": schema}}
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
    if guards is not None and guards.auth_header is not None:
        op["security"] = [] if route.path in guards.public_paths else _SECURITY
    return op


_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_") or "root"


def openapi_document(
    routes: Sequence[Route], *, title: str = "Caxton API", guards: Guards | None = None
) -> dict[str, Any]:
    """An OpenAPI 3.1 document describing `routes` (and, with ``guards``, what the middlewares
    in front of them may answer)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, guards)
    components: dict[str, Any] = {"schemas": {"Error": ERROR_SCHEMA}}
    if guards is not None and guards.auth_header is not None:
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "apiKey": {"type": "apiKey", "in": "header", "name": guards.auth_header},
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__},
        "paths": paths,
        "components": components,
    }
