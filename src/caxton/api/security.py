"""Authentication, rate limiting and CORS as aiohttp middlewares (the `[security]` keys).

* Auth (``auth_enabled``): every route but ``/health``, ``/ready`` and the OpenAPI document
  needs a token (`caxton.security.TokenIssuer`) as ``Authorization: Bearer`` or in
  ``api_key_header`` (a WebSocket upgrade from a browser, which cannot set headers, may offer it
  as the subprotocol ``caxton.token.<token>``); otherwise ``401 UNAUTHORIZED``. The dashboard's
  static files (``/ui/``) need none.
* Rate limits (``rate_limit_enabled``): a token bucket per client address refilled at
  ``rate_limit_per_second`` up to ``rate_limit_burst``; an empty bucket answers
  ``429 RATE_LIMITED`` with ``Retry-After``. Buckets of idle clients are forgotten.
* CORS (``cors_enabled``): requests from ``cors_origins`` (``"*"`` for any) get the CORS
  headers, and preflight ``OPTIONS`` requests are answered with ``cors_methods``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from aiohttp import web

from caxton.api.errors import error_response
from caxton.api.keys import PUBLIC_PATHS, is_ui_path
from caxton.clock import SYSTEM_CLOCK, Clock
from caxton.config import SecurityConfig
from caxton.errors import SecurityError
from caxton.security import TokenIssuer

__all__ = ["PRINCIPAL", "WS_TOKEN_PREFIX", "security_middlewares", "websocket_token"]

log = logging.getLogger("caxton.security")

#: Who the request's token names (set when authentication is on).
PRINCIPAL = web.RequestKey("principal", str)

_IDLE_BUCKET_SECONDS = 300.0


def _auth_middleware(config: SecurityConfig) -> Any:
    assert config.jwt_secret is not None  # the config loader guarantees it when auth is on
    issuer = TokenIssuer(config.jwt_secret.reveal(), default_expiry=config.jwt_expiry)
    if issuer.weak:
        log.warning(
            "security.jwt_secret is shorter than 32 bytes; use a longer random secret "
            "(for example: openssl rand -base64 48)"
        )
    header = config.api_key_header

    @web.middleware
    async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS or request.method == "OPTIONS" or is_ui_path(request.path):
            response: web.StreamResponse = await handler(request)
            return response
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else request.headers.get(header)
        if not token and request.headers.get("Upgrade", "").lower() == "websocket":
            token = websocket_token(request)
        if not token:
            return error_response(
                401,
                "UNAUTHORIZED",
                f"this API needs a token: send 'Authorization: Bearer <token>' or '{header}: "
                "<token>' (create one with `caxton token create`)",
                headers={"WWW-Authenticate": 'Bearer realm="caxton"'},
            )
        try:
            claims = issuer.verify(token)
        except SecurityError as exc:
            return error_response(
                401,
                "UNAUTHORIZED",
                exc.message,
                headers={"WWW-Authenticate": 'Bearer realm="caxton", error="invalid_token"'},
            )
        request[PRINCIPAL] = claims.subject
        response = await handler(request)
        return response

    return authenticate


#: A browser's WebSocket cannot set headers: it offers the token as a subprotocol
#: ``caxton.token.<token>`` next to ``caxton.events`` (the one the server answers with).
WS_TOKEN_PREFIX = "caxton.token."


def websocket_token(request: web.Request) -> str | None:
    """The token a WebSocket upgrade offers in ``Sec-WebSocket-Protocol``, if any."""
    for offered in request.headers.getall("Sec-WebSocket-Protocol", []):
        for protocol in offered.split(","):
            protocol = protocol.strip()
            if protocol.startswith(WS_TOKEN_PREFIX) and len(protocol) > len(WS_TOKEN_PREFIX):
                return protocol[len(WS_TOKEN_PREFIX) :]
    return None


class _Buckets:
    """Token buckets per client address."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._swept = clock.monotonic()

    def take(self, client: str) -> float:
        """0 if a request may go ahead now, else the seconds until one may."""
        now = self.clock.monotonic()
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if now - self._swept > _IDLE_BUCKET_SECONDS:
            self._sweep(now)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _sweep(self, now: float) -> None:
        full = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full}
        self._swept = now


def _rate_limit_middleware(config: SecurityConfig, clock: Clock) -> Any:
    buckets = _Buckets(config.rate_limit_per_second, config.rate_limit_burst, clock)

    @web.middleware
    async def rate_limit(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in ("/health", "/ready"):
            wait = buckets.take(request.remote or "unknown")
            if wait > 0:
                return error_response(
                    429,
                    "RATE_LIMITED",
                    f"too many requests: at most {config.rate_limit_per_second:g}/s "
                    f"(burst {config.rate_limit_burst})",
                    {"retry_after_seconds": round(wait, 3)},
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        response: web.StreamResponse = await handler(request)
        return response

    return rate_limit


def _cors_middleware(config: SecurityConfig) -> Any:
    origins = set(config.cors_origins)
    methods = ", ".join(config.cors_methods)
    allow_headers = f"Authorization, Content-Type, {config.api_key_header}"

    def allowed(origin: str | None) -> bool:
        return origin is not None and ("*" in origins or origin in origins)

    @web.middleware
    async def cors(request: web.Request, handler: Any) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        preflight = (
            request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        )
        if preflight:
            if not allowed(origin):
                return error_response(403, "FORBIDDEN", f"origin {origin!r} is not allowed")
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = methods
            response.headers["Access-Control-Allow-Headers"] = allow_headers
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        if allowed(origin):
            assert origin is not None
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    return cors


def security_middlewares(config: SecurityConfig, *, clock: Clock = SYSTEM_CLOCK) -> list[Any]:
    """The middlewares the `[security]` section asks for, outermost first."""
    middlewares: list[Any] = []
    if config.cors_enabled:
        middlewares.append(_cors_middleware(config))
    if config.rate_limit_enabled:
        middlewares.append(_rate_limit_middleware(config, clock))
    if config.auth_enabled:
        middlewares.append(_auth_middleware(config))
    return middlewares
