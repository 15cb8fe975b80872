"""What ``otlp_endpoint`` (and ``otlp_protocol``) mean: which OTLP exporter, and where to.

The rule (docs/observability.md, "Choosing the protocol"), first match wins:

1. ``otlp_protocol`` set: ``"grpc"`` or ``"http/protobuf"``, whatever the URL looks like.
2. A ``grpc://`` URL: OTLP/gRPC.
3. A URL with a path (``/v1/traces``, or any other): OTLP/HTTP, to that path.
4. Port 4317 (the OTLP/gRPC port): OTLP/gRPC.
5. Anything else (port 4318, another port, none): OTLP/HTTP, to ``/v1/traces``.

gRPC goes over TLS for an ``https://`` URL and in plain text (insecure) for ``http://`` and
``grpc://``; a gRPC endpoint without a port uses 4317.

Before that rule, without ``otlp_protocol``: a URL on port 14268 or with the path
``/api/traces`` is Jaeger's legacy Thrift collector, which does not take OTLP; `otlp_target`
returns `LegacyJaeger` for it (the caller warns and exports nothing). Setting
``otlp_protocol`` says the URL is an OTLP receiver after all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import SplitResult, urlsplit, urlunsplit

__all__ = [
    "OTLP_GRPC_PORT",
    "OTLP_HTTP_PORT",
    "LegacyJaeger",
    "OtlpProtocol",
    "OtlpTarget",
    "otlp_target",
]

OtlpProtocol = Literal["grpc", "http/protobuf"]

OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
_JAEGER_THRIFT_PORT = 14268
_JAEGER_THRIFT_PATH = "/api/traces"
_TRACES_PATH = "/v1/traces"
_SCHEMES = ("http", "https", "grpc")


@dataclass(frozen=True, slots=True)
class OtlpTarget:
    """Where and how spans are exported."""

    protocol: OtlpProtocol
    #: ``http/protobuf``: the URL spans are POSTed to; ``grpc``: ``host:port``.
    endpoint: str
    #: gRPC only: plain text (no TLS).
    insecure: bool = False

    def describe(self) -> str:
        """For logs: ``OTLP/gRPC to host:port (insecure)`` or ``OTLP/HTTP to URL``."""
        if self.protocol == "grpc":
            return f"OTLP/gRPC to {self.endpoint}" + (" (insecure)" if self.insecure else " (TLS)")
        return f"OTLP/HTTP to {self.endpoint}"


@dataclass(frozen=True, slots=True)
class LegacyJaeger:
    """``otlp_endpoint`` names Jaeger's legacy Thrift collector, which does not take OTLP."""

    endpoint: str
    host: str

    def warning(self) -> str:
        """The startup warning: what is wrong and what to write instead."""
        return (
            f"observability.otlp_endpoint: {self.endpoint} is Jaeger's legacy Thrift collector "
            "(port 14268, /api/traces), which does not accept OTLP; no spans are exported. "
            "Use Jaeger's OTLP receiver instead: "
            f'otlp_endpoint = "http://{self.host}:{OTLP_HTTP_PORT}/v1/traces" (OTLP/HTTP) or '
            f'"grpc://{self.host}:{OTLP_GRPC_PORT}" (OTLP/gRPC), or an OpenTelemetry Collector; '
            "set otlp_protocol if this URL really is an OTLP receiver"
        )


def _parts(endpoint: str) -> tuple[SplitResult, int | None]:
    parts = urlsplit(endpoint.strip())
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{endpoint!r} has an invalid port") from None
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise ValueError(
            f"{endpoint!r} is not an http://, https:// or grpc:// URL with a host (for example "
            '"http://otel-collector:4318/v1/traces" or "grpc://otel-collector:4317")'
        )
    return parts, port


def otlp_target(endpoint: str, protocol: OtlpProtocol | None = None) -> OtlpTarget | LegacyJaeger:
    """What `endpoint` means (see the module docstring).

    Raises:
        ValueError: `endpoint` is not an ``http``/``https``/``grpc`` URL with a host, or it
            contradicts `protocol` (a path for gRPC, ``grpc://`` for OTLP/HTTP). The message
            does not name the key: the caller does.
    """
    parts, port = _parts(endpoint)
    has_path = parts.path not in ("", "/")
    if protocol is None:
        if port == _JAEGER_THRIFT_PORT or parts.path.rstrip("/") == _JAEGER_THRIFT_PATH:
            return LegacyJaeger(endpoint=endpoint, host=str(parts.hostname))
        if parts.scheme == "grpc" or (not has_path and port == OTLP_GRPC_PORT):
            protocol = "grpc"
        else:
            protocol = "http/protobuf"
    if protocol == "grpc":
        if has_path or parts.query:
            raise ValueError(
                f"{endpoint!r} has a path, but OTLP/gRPC takes only a host and port (for "
                f'example "grpc://otel-collector:4317")'
            )
        host = parts.netloc.rpartition("@")[2]
        if port is None:
            host = f"{host}:{OTLP_GRPC_PORT}"
        return OtlpTarget("grpc", host, insecure=parts.scheme != "https")
    if parts.scheme == "grpc":
        raise ValueError(
            f'{endpoint!r} is a grpc:// URL, but otlp_protocol is "http/protobuf" (write '
            '"http://..." for OTLP/HTTP)'
        )
    if not has_path:
        parts = parts._replace(path=_TRACES_PATH)
    return OtlpTarget("http/protobuf", urlunsplit(parts))
