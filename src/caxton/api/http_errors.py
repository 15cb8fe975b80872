"""Requests aiohttp refuses before any handler runs, answered in the JSON error envelope.

A bad request line, an oversized header, an invalid header character, both ``Content-Length``
and ``Transfer-Encoding`` (a request-smuggling attempt) or broken chunked framing never reach
the application: aiohttp's connection handler answers them itself, in plain text, and logs
each with a full traceback at ERROR. `use_json_errors` replaces that answer on one connection
with the envelope every other error uses, and logs one WARNING line without a traceback: the
client is wrong, not the server (at most `errors.MALFORMED_LOG_PER_SECOND` such lines a
second, then one line with the count of the others: a flood of garbage must not flood the log).
A 5xx (a bug of ours that escaped every middleware) is still logged with its traceback.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from caxton.api.errors import bad_http_message, error_response

__all__ = ["use_json_errors"]

log = logging.getLogger("caxton.http")


class _JsonErrors(RequestHandler):
    """aiohttp's connection handler, answering its own errors in the JSON envelope.

    No slots of its own, so an existing handler can become one (`use_json_errors`).
    """

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # a response is under way: nothing can be said
            raise ConnectionError("the response was already started; closing the connection")
        if isinstance(exc, HttpProcessingError) and status < 500:
            return bad_http_message(exc, request.remote)
        log.error("error handling a request from %s", request.remote, exc_info=exc)
        response = error_response(500, "INTERNAL_ERROR", "internal error; see the server log")
        response.force_close()
        return response


def use_json_errors(handler: RequestHandler) -> None:
    """Make ``handler`` (one connection) answer its own errors in the JSON envelope.

    aiohttp creates the handler itself (`web.Server.__call__`) and its slots forbid patching
    one method, so the handler's class is switched to `_JsonErrors`, which only overrides
    ``handle_error`` and has the same layout.
    """
    if type(handler) is RequestHandler:
        handler.__class__ = _JsonErrors
