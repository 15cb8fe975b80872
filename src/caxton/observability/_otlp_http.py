"""`DirectSession`: the OTLP/HTTP exporter's requests session for a plain ``http://`` collector.

The SDK's OTLP/HTTP exporter posts each batch through a `requests.Session`: per request,
requests merges settings and hooks, urllib3 checks its pool and the response's headers go
through the ``email`` parser. In the span export process that was about a third of its CPU
(py-spy, the export thread holding the interpreter lock). `DirectSession` is a
`requests.Session` whose POSTs to the one endpoint it was made for go over one kept-alive
`http.client` connection instead, and come back as a `requests.Response`, so the exporter's
retries, headers, compression and timeouts stay the SDK's own. Anything else (another method,
URL or keyword) goes the normal requests way. It is used only where requests would connect
directly: an ``https`` endpoint, or one behind a proxy of the environment, keeps the SDK's
session (`caxton.observability._span_export`).

A connection error becomes `requests.exceptions.ConnectionError` (a timeout, `ReadTimeout`), as
the exporter expects to retry on. A kept-alive connection the collector closed meanwhile is
found when the next request fails before a response: that request is sent once more on a new
connection.
"""

from __future__ import annotations

import http.client
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from requests import Response
from requests.structures import CaseInsensitiveDict

__all__ = ["DirectSession"]

#: Keywords of `requests.Session.request` a direct POST handles (others go the requests way).
_HANDLED = frozenset({"data", "headers", "timeout", "verify", "cert", "allow_redirects", "json"})


class DirectSession(requests.Session):
    """A requests session that POSTs to ``endpoint`` (``http://host[:port]/path``) directly
    (see the module)."""

    def __init__(self, endpoint: str) -> None:
        super().__init__()
        self.trust_env = False  # no proxy applies (the caller checked), no ~/.netrc
        parts = urlsplit(endpoint)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not a plain http endpoint: {endpoint!r}")
        self.endpoint = endpoint
        self._host = parts.hostname
        self._port = parts.port or 80
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        #: Requests sent, and connections opened, directly (for tests and troubleshooting).
        self.requests_sent = self.connections_opened = 0

    def request(  # (requests' keywords are passed through)
        self, method: str, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        data = kwargs.get("data")
        if (
            args
            or method != "POST"
            or url != self.endpoint
            or not kwargs.keys() <= _HANDLED
            or kwargs.get("json") is not None
            or not isinstance(data, bytes | bytearray | memoryview | None)
        ):
            return super().request(method, url, *args, **kwargs)
        headers = dict(self.headers)
        headers["Accept-Encoding"] = "identity"  # the body is read as sent (requests decodes)
        headers.update(kwargs.get("headers") or {})
        with self._lock:
            return self._post(bytes(data or b""), headers, _seconds(kwargs.get("timeout")))

    def _post(
        self, body: bytes, headers: dict[str, str], timeout: float | None
    ) -> requests.Response:
        reused = self._connection is not None
        try:
            return self._send(body, headers, timeout)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
            if not reused:
                message = "the collector closed the connection"
                raise requests.exceptions.ConnectionError(message) from exc
        return self._send(body, headers, timeout)  # a kept-alive connection it had closed

    def _send(
        self, body: bytes, headers: dict[str, str], timeout: float | None
    ) -> requests.Response:
        connection = self._connection
        if connection is None:
            connection = self._connection = http.client.HTTPConnection(
                self._host, self._port, timeout=timeout
            )
            self.connections_opened += 1
        else:  # this request's timeout, also when http.client reconnects by itself
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
        try:
            connection.request("POST", self._path, body=body, headers=headers)
            raw = connection.getresponse()
            content = raw.read()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self._drop()
            raise
        except TimeoutError as exc:
            self._drop()
            raise requests.exceptions.ReadTimeout(str(exc) or "timed out") from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise requests.exceptions.ConnectionError(str(exc) or type(exc).__name__) from exc
        self.requests_sent += 1
        if raw.will_close:
            self._drop()
        response = Response()
        response.status_code = raw.status
        response.reason = raw.reason
        response.headers = CaseInsensitiveDict(raw.getheaders())
        response._content = content
        response.url = self.endpoint
        return response

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def close(self) -> None:
        with self._lock:
            self._drop()
        super().close()


def _seconds(timeout: Any) -> float | None:
    """A requests ``timeout`` (seconds, or a (connect, read) pair) as one socket timeout."""
    if isinstance(timeout, tuple):
        given = [t for t in timeout if t is not None]
        return max(given) if given else None
    return None if timeout is None else float(timeout)
