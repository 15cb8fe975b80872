"""TLS for the CLI's client commands: which CA to trust, which client certificate to show.

``--ca-cert FILE`` (env ``CAXTON_CA_CERT``) is the CA bundle that signed the node's certificate
(the node's ``tls_ca_path``, or its self-signed ``tls_cert_path``); without it the system's
trust store is used. ``--client-cert FILE --client-key FILE`` (env ``CAXTON_CLIENT_CERT``,
``CAXTON_CLIENT_KEY``) is the certificate a node with ``tls_client_auth`` asks for.

The options store one `ssl.SSLContext` in the click context (they are not parameters of each
command), and `make_client` picks it up. `explain_tls_failure` turns a failed handshake into one
line that says what to pass.
"""

from __future__ import annotations

import socket
import ssl
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = [
    "current_ssl_context",
    "explain_tls_failure",
    "handshake_failure",
    "has_client_cert",
    "speaks_tls",
    "tls_options",
]

F = TypeVar("F", bound=Callable[..., Any])

_META_KEY = "caxton.tls"
_CA_HINT = "pass --ca-cert FILE (env CAXTON_CA_CERT) with the CA that signed the node's certificate"
_CLIENT_HINT = (
    "the node asks for a client certificate: pass --client-cert FILE --client-key FILE "
    "(env CAXTON_CLIENT_CERT, CAXTON_CLIENT_KEY) signed by the node's tls_ca_path"
)


def _remember(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta.setdefault(_META_KEY, {})[param.name] = value


def _build(ctx: click.Context) -> ssl.SSLContext | None:
    given: dict[str, str] = ctx.meta.get(_META_KEY, {})
    if not given:
        return None
    ca, cert, key = given.get("ca_cert"), given.get("client_cert"), given.get("client_key")
    if (cert is None) != (key is None):
        raise click.UsageError("--client-cert and --client-key go together (give both)")
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise click.BadParameter(
            f"cannot load the CA bundle {ca}: {exc}", param_hint="--ca-cert"
        ) from None
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise click.BadParameter(
                f"cannot load the client certificate {cert} with key {key}: {exc}",
                param_hint="--client-cert/--client-key",
            ) from None
    return context


def current_ssl_context() -> ssl.SSLContext | None:
    """The context the running command's TLS options ask for (None: Python's defaults)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    root = ctx.find_root()
    if "caxton.tls.context" not in root.meta:
        root.meta["caxton.tls.context"] = _build(ctx)
    context: ssl.SSLContext | None = root.meta["caxton.tls.context"]
    return context


def has_client_cert() -> bool:
    """True when the running command was given a client certificate."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and "client_cert" in ctx.meta.get(_META_KEY, {})


def tls_options(func: F) -> F:
    """``--ca-cert``, ``--client-cert`` and ``--client-key`` (not passed to the command)."""
    file = click.Path(exists=True, dir_okay=False)
    for name, env, text in (
        ("--client-key", "CAXTON_CLIENT_KEY", "Private key of --client-cert (PEM)."),
        ("--client-cert", "CAXTON_CLIENT_CERT", "Client certificate (PEM) for tls_client_auth."),
        ("--ca-cert", "CAXTON_CA_CERT", "CA bundle (PEM) that signed the node's certificate."),
    ):
        func = click.option(
            name,
            envvar=env,
            type=file,
            metavar="FILE",
            expose_value=False,
            callback=_remember,
            help=f"{text} (env {env})",
        )(func)
    return func


def speaks_tls(server: str, timeout: float = 2.0) -> bool:
    """True when ``server``'s port completes a TLS handshake (certificate not checked)."""
    parts = urllib.parse.urlsplit(server)
    if parts.hostname is None:
        return False
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=parts.hostname),
        ):
            return True
    except ssl.SSLCertVerificationError:
        return True
    except ssl.SSLError as exc:
        # A node that wants a client certificate may refuse the handshake: it spoke TLS.
        return "CERTIFICATE_REQUIRED" in str(exc).upper() or "ALERT" in str(exc).upper()
    except OSError:
        return False


def handshake_failure(
    server: str, context: ssl.SSLContext | None, *, has_client_cert: bool, timeout: float = 2.0
) -> str | None:
    """Why the node at `server` closes TLS connections made with `context`, if it does.

    A node that refuses the client's certificate (or its absence) aborts its side of the TLS
    1.3 handshake after the client's side is done, so the failed request only saw the
    connection close. This opens a fresh connection and waits briefly: an HTTP server leaves
    a new connection open, a refusing one closes it at once.
    """
    parts = urllib.parse.urlsplit(server)
    if parts.hostname is None:
        return None
    context = context or ssl.create_default_context()
    try:
        with (
            socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=parts.hostname) as tls,
        ):
            closed = tls.recv(1) == b""
    except TimeoutError:
        return None
    except OSError as exc:
        return explain_tls_failure(server, exc)
    if not closed:
        return None
    if has_client_cert:
        return (
            "the node closed the connection after the TLS handshake: it refused the client "
            "certificate (is it signed by the node's tls_ca_path, and not expired?)"
        )
    return f"the node closed the connection after the TLS handshake: {_CLIENT_HINT}"


def explain_tls_failure(server: str, exc: BaseException) -> str | None:
    """One line saying what to pass when `exc` is a TLS problem talking to `server`."""
    text = str(exc)
    upper = text.upper()
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in upper:
        reason = getattr(exc, "verify_message", None) or text
        if "MISMATCH" in str(reason).upper():
            return (
                f"the node's TLS certificate does not name this address ({reason}): use a "
                "--server host name or IP address that the certificate lists"
            )
        return f"the node's TLS certificate is not trusted ({reason}): {_CA_HINT}"
    if "CERTIFICATE_REQUIRED" in upper or "CERTIFICATE REQUIRED" in upper:
        return _CLIENT_HINT
    if any(alert in upper for alert in ("UNKNOWN CA", "UNKNOWN_CA", "BAD CERTIFICATE")):
        return f"the node refused the client certificate ({text}): {_CLIENT_HINT}"
    if "WRONG_VERSION_NUMBER" in upper or "RECORD_LAYER_FAILURE" in upper:
        plain = "http://" + server.split("://", 1)[-1]
        return f"this port does not speak TLS: use {plain}"
    if isinstance(exc, ssl.SSLError):
        return f"the TLS handshake with the node failed ({text})"
    return None
