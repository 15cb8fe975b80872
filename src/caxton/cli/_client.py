"""A small synchronous client for the Caxton HTTP API, used by the CLI's client commands.

The server comes from ``--server`` or ``CAXTON_SERVER`` (default ``http://127.0.0.1:8080``),
the token from ``--token`` or ``CAXTON_TOKEN``, TLS trust and client certificates from
``--ca-cert``, ``--client-cert`` and ``--client-key`` (`caxton.cli._tls`). API errors keep
their envelope so the CLI can print the server's own message and exit 1. Whatever else goes
wrong (a server address that is not an http(s) URL, a server that is not Caxton, one that does
not speak HTTP) is one `ApiFailure` whose message says what to check: never a traceback, never a
silent wait.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from caxton.cli._tls import (
    current_ssl_context,
    explain_tls_failure,
    handshake_failure,
    has_client_cert,
    speaks_tls,
    tls_options,
)

__all__ = ["ApiClient", "ApiFailure", "client_options"]

DEFAULT_SERVER = "http://127.0.0.1:8080"
#: `ApiFailure.code` of a ``--server`` value that is not a usable URL (the CLI exits 2).
BAD_SERVER = "BAD_SERVER"

F = TypeVar("F", bound=Callable[..., Any])


class ApiFailure(Exception):
    """The server answered with an error envelope, or could not be reached."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True, slots=True)
class ApiClient:
    """Blocking JSON calls to one Caxton server."""

    server: str
    token: str | None = None
    timeout: float = 30.0
    #: CA and client certificate for https:// (None: the system's trust store, no certificate)
    ssl_context: ssl.SSLContext | None = None
    #: whether `ssl_context` carries a client certificate (to explain a refusal)
    client_cert: bool = False

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
        query: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """Send one request; return (status, decoded JSON body) or raise `ApiFailure`."""
        url = self.server.rstrip("/") + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        if json_body is not None:
            data = json.dumps(json_body).encode()
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(
                req, timeout=timeout or self.timeout, context=self.ssl_context
            ) as resp:
                raw = resp.read()
                return resp.status, self._decode(resp.status, resp.headers, raw)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                err = json.loads(raw)["error"]
                message = err["message"] + self._hint(exc.code, err["code"], err["message"])
                raise ApiFailure(exc.code, err["code"], message, err.get("details") or {})
            except (ValueError, KeyError, TypeError):
                raise self._not_caxton(exc.code, exc.headers, raw) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiFailure(
                0,
                "UNREACHABLE",
                self._unreachable(reason if isinstance(reason, BaseException) else exc, reason),
                {},
            ) from exc
        except http.client.HTTPException as exc:
            raise ApiFailure(
                0,
                "UNREACHABLE",
                f"{self.server} did not answer in HTTP ({type(exc).__name__}): is --server the "
                "address of a Caxton node's API (and http:// or https:// as the node serves)?",
                {},
            ) from exc

    def _hint(self, status: int, code: str, message: str) -> str:
        """What to pass on the command line, for the errors the server words for HTTP clients."""
        if code == "UNAUTHORIZED":
            if self.token:
                return "; the token came from --token or CAXTON_TOKEN"
            return "; from the command line, pass --token TOKEN or CAXTON_TOKEN"
        if status == 404 and message.startswith("no route for "):
            # Every route the CLI calls exists on a node's API: this is another listener.
            return (
                f"; is --server (or CAXTON_SERVER) the node's API address "
                f"(networking.bind_address)? {self.server} is not (a metrics or admin listener?)"
            )
        return ""

    def _decode(self, status: int, headers: Any, raw: bytes) -> Any:
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise self._not_caxton(status, headers, raw) from None

    def _not_caxton(self, status: int, headers: Any, raw: bytes) -> ApiFailure:
        """An answer that is not Caxton's JSON: say what came back and what to check."""
        kind = (headers.get("Content-Type") if headers is not None else None) or "no content type"
        first = raw.decode(errors="replace").strip().splitlines()[:1]
        sample = f": {first[0][:80]!r}" if first else ""
        reason = http.client.responses.get(status, "")
        return ApiFailure(
            status,
            "HTTP_ERROR",
            f"{self.server} answered HTTP {status} {reason} ({kind}{sample}), not a Caxton API "
            "answer: is --server (or CAXTON_SERVER) the address of a Caxton node's API?",
            {},
        )

    def _unreachable(self, cause: BaseException, reason: object) -> str:
        """The one line for a failed call: what to pass when TLS is the problem."""
        why = explain_tls_failure(self.server, cause)
        if why is None and isinstance(cause, ConnectionError):
            if self.server.startswith("http://"):
                # A TLS listener drops a plain-HTTP request without an answer.
                if speaks_tls(self.server):
                    why = f"this port speaks TLS: use https://{self.server.split('://', 1)[1]}"
            else:
                why = handshake_failure(
                    self.server, self.ssl_context, has_client_cert=self.client_cert
                )
        if why is not None:
            return f"cannot talk to the Caxton server at {self.server}: {why}"
        return f"cannot reach the Caxton server at {self.server}: {reason}"


def server_url(server: str) -> str:
    """``server`` as an ``http(s)://host[:port]`` URL (``host:port`` gets ``http://``).

    Raises `ApiFailure` with code `BAD_SERVER` for anything else, naming what is wrong.
    """
    url = server.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    problem = None
    if parts.scheme not in ("http", "https"):
        problem = f"the scheme must be http:// or https://, not {parts.scheme}://"
    elif not parts.hostname or any(c.isspace() for c in url):
        problem = "not a URL"
    else:
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            problem = "the port is not a number from 0 to 65535"
    if problem is not None:
        raise ApiFailure(
            0,
            BAD_SERVER,
            f"--server {server!r} (or CAXTON_SERVER): {problem}; expected a URL such as "
            f"{DEFAULT_SERVER} or https://caxton.example.com:8443",
            {},
        )
    return url


def client_options(func: F) -> F:
    """``--server``, ``--token``, ``--output`` and the TLS options for every client command."""
    func = tls_options(func)
    func = click.option(
        "--output",
        "-o",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="Human table or JSON for scripts.",
    )(func)
    func = click.option(
        "--token",
        envvar="CAXTON_TOKEN",
        default=None,
        help="API token (env CAXTON_TOKEN).",
    )(func)
    func = click.option(
        "--server",
        envvar="CAXTON_SERVER",
        default=DEFAULT_SERVER,
        show_default=True,
        help="API address (env CAXTON_SERVER).",
    )(func)
    return func


def page_options(func: F) -> F:
    """``--offset`` and ``--limit`` for the paginated list commands (limit as the API's: 1-1000)."""
    func = click.option(
        "--limit",
        type=click.IntRange(1, 1000),
        default=100,
        show_default=True,
        help="Entries per page.",
    )(func)
    func = click.option(
        "--offset",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Entries to skip (the next page: --offset plus --limit).",
    )(func)
    return func


def make_client(server: str, token: str | None) -> ApiClient:
    """A client for `server`, accepting ``host:port`` without a scheme (see `server_url`)."""
    return ApiClient(
        server=server_url(server),
        token=token or os.environ.get("CAXTON_TOKEN") or None,
        ssl_context=current_ssl_context(),
        client_cert=has_client_cert(),
    )


__all__ += ["BAD_SERVER", "make_client", "page_options", "server_url"]
