"""The JSON error envelope and the middleware that makes every error use it.

Every error the API answers looks like ``{"error": {"code", "message", "details"}}``
(docs/api.md, "Errors"): our own `caxton.errors.Error` subclasses carry their code and status;
aiohttp's HTTP exceptions (404 for an unknown path, 405, 413 for a body above the limit) are
translated here, once; anything unexpected becomes a logged 500 ``INTERNAL_ERROR`` whose
message does not leak internals.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from caxton.api.json_body import check_depth
from caxton.api.keys import MAX_REQUEST_SIZE, REQUEST_TIMEOUT
from caxton.api.log_throttle import LogThrottle
from caxton.errors import Error, StorageError

__all__ = ["ApiError", "bad_http_message", "error_middleware", "error_response", "read_json"]

log = logging.getLogger("caxton.http")

#: Malformed requests logged one by one per second; the rest are summed up in one line.
MALFORMED_LOG_PER_SECOND = 10

#: Codes for the errors aiohttp raises itself: the codes of docs/api.md ("Errors"), with
#: NOT_FOUND and METHOD_NOT_ALLOWED for paths and methods that do not exist at all.
_HTTP_CODES: dict[int, str] = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "INVALID_REQUEST",
    429: "RATE_LIMITED",
    503: "UNAVAILABLE",
}


class ApiError(Error):
    """An error raised by a handler with an explicit code and status."""

    def __init__(
        self, status: int, code: str, message: str, *, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.http_status = status
        self.http_code = code


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """One JSON error envelope."""
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return web.json_response(body, status=status, headers=headers)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or a 400 INVALID_REQUEST saying why it is not.

    A ``charset`` other than one Python knows is 415; JSON nested deeper than
    `~caxton.api.json_body.MAX_JSON_DEPTH` is 400 before it is decoded.
    """
    charset = request.charset or "utf-8"
    body = await request.read()
    try:
        text = body.decode(charset)
    except LookupError:  # not a codec, or not a text one ("rot13")
        raise ApiError(
            415,
            "INVALID_REQUEST",
            f"unknown charset {charset!r:.40} in Content-Type: send JSON as UTF-8",
            details={"charset": charset[:40]},
        ) from None
    except ValueError as exc:
        raise ApiError(
            400, "INVALID_REQUEST", f"the request body is not {charset:.40} text: {exc}"
        ) from None
    check_depth(body)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ApiError(
            400, "INVALID_REQUEST", f"the request body is not valid JSON: {exc}"
        ) from None


def bad_http_message(exc: HttpProcessingError, remote: str | None) -> web.Response:
    """The envelope for a request HTTP itself refuses.

    Logged at WARNING, one line each, but at most `MALFORMED_LOG_PER_SECOND` a second: a
    client sending garbage as fast as it can must not fill the disk with the log; the lines
    over that are counted in one summary line a second (`LogThrottle`).
    """
    status = exc.code if 400 <= exc.code < 500 else 400
    text = " ".join(str(exc.message).split())
    if text.startswith("400, message: "):  # a payload error wraps the parser's own text
        text = text[len("400, message: ") :]
    reason = text[:200] or type(exc).__name__
    throttle = LogThrottle.for_loop(
        log, "malformed HTTP requests", per_second=MALFORMED_LOG_PER_SECOND
    )
    if throttle.allow(remote):
        log.warning(
            "refused a malformed HTTP request from %s: %s",
            remote,
            reason,
            extra={"remote": remote, "status": status, "reason": reason},
        )
    response = error_response(
        status, _HTTP_CODES.get(status, "INVALID_REQUEST"), f"malformed HTTP request: {reason}"
    )
    response.force_close()
    return response


def _from_http_exception(exc: web.HTTPException, request: web.Request) -> web.Response:
    status = exc.status
    code = _HTTP_CODES.get(status, "INVALID_REQUEST" if status < 500 else "INTERNAL_ERROR")
    details: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if status == 404:
        message = f"no route for {request.method} {request.path}"
    elif status == 405 and isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(exc.allowed_methods)
        message = f"{request.method} is not allowed on {request.path}"
        details = {"allowed_methods": allowed}
        headers["Allow"] = ", ".join(allowed)
    elif status == 413:
        message = "the request body is larger than the server accepts"
        details = {"max_bytes": request.app[MAX_REQUEST_SIZE]}
    else:
        message = exc.text or exc.reason
    return error_response(status, code, message, details, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn every error into the envelope; bound each request by ``request_timeout``."""
    timeout: float = request.app[REQUEST_TIMEOUT]
    try:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            response: web.StreamResponse = await handler(request)
        else:
            async with asyncio.timeout(timeout):
                response = await handler(request)
    except ApiError as exc:
        return error_response(exc.http_status, exc.http_code, exc.message, exc.details)
    except StorageError as exc:
        # SQLite's words and the statement stay in the server log; the client learns only
        # that the state store failed (it may retry, or an operator looks at the log).
        log.error("storage failed in %s %s: %s", request.method, request.path, exc.message)
        return error_response(exc.status, exc.code, "the state store failed; see the server log")
    except Error as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http_exception(exc, request)
    except TimeoutError:
        return error_response(
            503,
            "UNAVAILABLE",
            f"the request took longer than request_timeout ({timeout:g}s)",
        )
    except (HttpProcessingError, RequestPayloadError) as exc:
        # The body's framing is broken (bad chunking) or it cannot be decoded (bad gzip). No
        # more of it can be read: end it here, or aiohttp reads it again after the response
        # (its lingering close) and logs the same error with a traceback.
        request.content.feed_eof()
        if isinstance(exc, RequestPayloadError):
            exc = HttpProcessingError(code=400, message=str(exc))
        return bad_http_message(exc, request.remote)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "INTERNAL_ERROR", "internal error; see the server log")
    return response
