"""What keeps a web page in the operator's browser from driving the API (CSRF, DNS rebinding).

With authentication off (the embedded default) the API trusts whoever reaches it, and a
browser on the same machine reaches ``localhost:8080`` for any page it shows. A page cannot read
the answers of a cross-site request, but it can *send* requests: a form or ``fetch(...,
{mode: "no-cors"})`` POST deploys an agent or sends a message. And a page whose DNS name is
re-pointed to 127.0.0.1 (DNS rebinding) is same-origin with the API and can read it as well.
Three checks, in `browser_guard_middleware`:

* **Origin.** A state-changing request (POST, PUT, PATCH, DELETE) or a WebSocket upgrade whose
  ``Origin`` header is present and not allowed answers ``403 FORBIDDEN``. Allowed: the origins
  in ``[security] cors_origins`` (``"*"``: any), the node's own origin (the ``Host`` the request
  was sent to), and, with authentication off, pages on loopback (``http://localhost:*``,
  ``http://127.0.0.1:*``, ``http://[::1]:*``). Browsers always send ``Origin`` on cross-site
  POSTs; the CLI, curl and other programs send none and are not affected.
* **Content type.** A state-changing request with a ``Content-Type`` that an HTML form or a
  "simple" ``fetch`` can send without a CORS preflight (``text/plain``,
  ``application/x-www-form-urlencoded``, ``multipart/form-data``) answers
  ``415 INVALID_REQUEST`` unless the route takes that type (only deploy takes multipart). Any
  other type, or none, is left to the handler, which refuses what it cannot read; a
  cross-site page cannot send those without a preflight, which CORS answers.
* **Host** (authentication off only). A request whose ``Host`` names something other than this
  node answers ``421 INVALID_REQUEST``: allowed are IP addresses (a page on an IP address is
  the node's own origin, so it cannot be a rebinding), ``localhost`` and the host of
  ``bind_address``, with any port or none. ``/health``, ``/ready`` and the OpenAPI document are
  exempt (probes send all sorts of ``Host``), and so are requests from ``trusted_proxies``: the
  proxy chooses which names it forwards (nginx ``server_name``). The admin listener, which has
  no authentication, checks ``Host`` always (a rebinding page could otherwise read
  ``/config``). A request line in absolute form (``GET http://evil.example/api/v1/agents``)
  names its host in the target, which replaces ``Host`` (RFC 9112 section 3.2.2, and what
  aiohttp's ``request.host`` reports): that authority is the one checked, and the one the
  Origin check compares with.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import urllib.parse
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from caxton.api.errors import error_response
from caxton.api.forwarded import parse_networks, trusted_peer
from caxton.api.keys import PUBLIC_PATHS
from caxton.api.routes import Route
from caxton.config import Config

__all__ = ["BODY_TYPES", "body_types", "browser_guard_middleware", "with_browser_responses"]

#: (method, route path) -> the content types its body may have (empty: it takes no body)
BODY_TYPES = web.AppKey("body_types", dict[tuple[str, str], frozenset[str]])

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: The content types a cross-site HTML form (or a "simple" fetch) can send.
FORM_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def body_types(routes: Iterable[Route]) -> dict[tuple[str, str], frozenset[str]]:
    """What each route's body may be, from its OpenAPI ``request_body`` (wasm: also
    ``application/octet-stream``, which deploy and upgrade read as the raw module)."""
    table: dict[tuple[str, str], frozenset[str]] = {}
    for route in routes:
        types = set(route.request_body)
        if "application/wasm" in types:
            types.add("application/octet-stream")
        table[(route.method, route.path)] = frozenset(types)
    return table


def with_browser_responses(routes: Iterable[Route]) -> list[Route]:
    """`routes` with the statuses of the browser guard in their documented responses."""
    out: list[Route] = []
    for route in routes:
        if route.path in PUBLIC_PATHS:
            out.append(route)
            continue
        extra = {421: "Host is not one of this node's names (authentication off: DNS rebinding)"}
        if route.method in STATE_CHANGING:
            extra[403] = "Origin is not allowed (a cross-site request from a web page)"
            extra[415] = "Content-Type is not one this route takes"
        out.append(dataclasses.replace(route, responses={**extra, **route.responses}))
    return out


def _host_name(host: str) -> str:
    """``"LocalHost.:8080"`` -> ``"localhost"``, ``"[::1]:80"`` -> ``"::1"``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _target_host(request: web.Request) -> str | None:
    """The host the request is for: an absolute-form target's authority, else ``Host``.

    An authority that cannot be parsed comes back as ``""``, which no check allows.
    """
    target = request.raw_path
    if target.startswith("/") or "://" not in target:
        return request.headers.get("Host")
    try:
        netloc = urllib.parse.urlsplit(target).netloc
    except ValueError:
        return ""
    return netloc.rpartition("@")[2]  # "user@host" names host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _origin_allowed(origin: str, request: web.Request, auth: bool, listed: frozenset[str]) -> bool:
    if "*" in listed or origin in listed:
        return True
    parts = urllib.parse.urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False  # "null" (sandboxed frames, file: pages) and anything stranger
    if parts.netloc.lower() == (_target_host(request) or "").strip().lower():
        return True  # same origin: a page served under the node's own name
    return not auth and parts.hostname in _LOOPBACK_NAMES


def _content_type_problem(
    request: web.Request, table: dict[tuple[str, str], frozenset[str]]
) -> str | None:
    header = request.headers.get("Content-Type")
    if header is None:
        return None
    media = header.split(";", 1)[0].strip().lower()
    if media not in FORM_TYPES:
        return None  # not one a form can send: a preflight would have stopped a cross-site one
    resource = request.match_info.route.resource
    if resource is None:
        return None  # no such route: the router answers 404 / 405
    accepted = table.get((request.method, resource.canonical))
    if accepted is None or media in accepted:
        return None
    if not accepted:
        return f"this route takes no body, and not a {media} one"
    wanted = " or ".join(sorted(accepted - {"application/octet-stream"}))
    return f"Content-Type {media!r} is not accepted here; send {wanted}"


def browser_guard_middleware(config: Config, *, authenticated: bool | None = None) -> Any:
    """The three checks of the module docstring, as one middleware.

    `authenticated` says whether the listener checks tokens (default: ``auth_enabled``); the
    admin listener never does, so it always checks ``Host``.
    """
    listed = frozenset(config.security.cors_origins)
    proxies = parse_networks(config.security.trusted_proxies)
    auth = config.security.auth_enabled if authenticated is None else authenticated
    own_names = frozenset({"localhost", _host_name(config.networking.bind_address.host)})

    @web.middleware
    async def browser_guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if not auth and request.path not in PUBLIC_PATHS:
            host = _target_host(request)
            peer = request.transport.get_extra_info("peername") if request.transport else None
            from_proxy = bool(proxies) and trusted_peer(peer, proxies)
            if host is not None and not from_proxy:
                name = _host_name(host)
                if not (_is_ip(name) or name in own_names):
                    return error_response(
                        421,
                        "INVALID_REQUEST",
                        f"this node does not answer for host {host!r} here (where no token "
                        "is checked, it answers only for localhost, IP addresses and its "
                        "bind_address)",
                        {"host": host, "allowed": [*sorted(own_names), "<IP address>"]},
                    )
        changing = request.method in STATE_CHANGING
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        origin = request.headers.get("Origin")
        if (
            (changing or upgrade)
            and origin is not None
            and not _origin_allowed(origin, request, auth, listed)
        ):
            return error_response(
                403,
                "FORBIDDEN",
                f"cross-site request refused: origin {origin!r} may not use this API (list it "
                "in [security] cors_origins to allow it)",
                {"origin": origin},
            )
        if changing:
            problem = _content_type_problem(request, request.app.get(BODY_TYPES, {}))
            if problem is not None:
                return error_response(
                    415,
                    "INVALID_REQUEST",
                    problem,
                    {"content_type": request.headers.get("Content-Type", "")},
                )
        response: web.StreamResponse = await handler(request)
        return response

    return browser_guard
