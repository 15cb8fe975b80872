"""A small synchronous client for the Caxton HTTP API, used by the CLI's client commands.

The server comes from ``--server`` or ``CAXTON_SERVER`` (default ``http://127.0.0.1:8080``),
the token from ``--token`` or ``CAXTON_TOKEN``, TLS trust and client certificates from
``--ca-cert``, ``--client-cert`` and ``--client-key`` (`caxton.cli._tls`). API errors keep
their envelope so the CLI can print the server's own message and exit 1.
"""

from __future__ import annotations

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
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                err = json.loads(raw)["error"]
                raise ApiFailure(exc.code, err["code"], err["message"], err.get("details") or {})
            except (ValueError, KeyError, TypeError):
                text = raw.decode(errors="replace")[:200]
                raise ApiFailure(exc.code, "HTTP_ERROR", f"HTTP {exc.code}: {text}", {}) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiFailure(
                0,
                "UNREACHABLE",
                self._unreachable(reason if isinstance(reason, BaseException) else exc, reason),
                {},
            ) from exc

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
    func = click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)(
        func
    )
    func = click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)(func)
    return func


def make_client(server: str, token: str | None) -> ApiClient:
    """A client for `server`, accepting ``host:port`` without a scheme."""
    if "://" not in server:
        server = "http://" + server
    return ApiClient(
        server=server,
        token=token or os.environ.get("CAXTON_TOKEN") or None,
        ssl_context=current_ssl_context(),
        client_cert=has_client_cert(),
    )


__all__ += ["make_client", "page_options"]
