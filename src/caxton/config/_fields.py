"""One parser per key of `production.toml`: TOML value in, typed value out.

Each parser takes the value as TOML gave it (after ``${VAR}`` substitution) and returns the
typed value the schema stores, or raises ValueError whose message reads
``expected <what>, got <value>``; the loader prefixes file and key. `SECTIONS` maps every
section and key the file may contain to its parser; `tests/config/test_schema_coverage.py` checks
it covers the schema dataclasses exactly.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from caxton.config import schema
from caxton.config._env import Substituted, parse_bool
from caxton.config._units import parse_duration, parse_size, toml_repr
from caxton.config.schema import NODE_NAME, Address

__all__ = ["SECTIONS", "Parser", "Section", "describe", "parse_address"]

Parser = Callable[[Any], Any]

_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_PROMETHEUS_PREFIX = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HEADER_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
_LOG_LEVELS = {"debug": "debug", "info": "info", "warn": "warning", "warning": "warning"}
_LOG_LEVELS |= {"error": "error", "critical": "critical"}


def describe(value: object) -> str:
    """How a TOML value is shown after ``got``: scalars as written, containers by kind."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, str | bool | int | float):
        return toml_repr(value)
    return f"a {type(value).__name__}"


def _fail(expected: str, value: object) -> ValueError:
    return ValueError(f"expected {expected}, got {describe(value)}")


def _number_text(value: object, expected: str, convert: Callable[[str], Any]) -> Any:
    """A ``${VAR}``-substituted string stands for a number; anything else is a type error."""
    if isinstance(value, Substituted):
        try:
            return convert(value.strip())
        except ValueError:
            raise _fail(expected, value) from None
    raise _fail(expected, value)


def boolean(value: Any) -> bool:
    """``true``/``false`` (or a substituted ``"${VAR}"`` reading as one)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, Substituted):
        try:
            return parse_bool(value)
        except ValueError:
            raise _fail("true or false", value) from None
    raise _fail("true or false", value)


def count(value: Any) -> int:
    """A whole number of at least 1 (a boolean is not a number)."""
    if isinstance(value, bool) or not isinstance(value, int):
        value = _number_text(value, "a whole number", int)
    if value < 1:
        raise _fail("a whole number of at least 1", value)
    return int(value)


def days_or_forever(value: Any) -> int:
    """A whole number of days, at least 0 (``log_retention_days``: 0 keeps files forever)."""
    if isinstance(value, bool) or not isinstance(value, int):
        value = _number_text(value, "a whole number of days (0 keeps forever)", int)
    if value < 0:
        raise _fail("a whole number of days, at least 0 (0 keeps forever)", value)
    return int(value)


def _real(value: Any, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float(_number_text(value, expected, float))
    return float(value)


def fraction(value: Any) -> float:
    """A number from 0 to 1 inclusive."""
    number = _real(value, "a number from 0 to 1")
    if not 0.0 <= number <= 1.0:
        raise _fail("a number from 0 to 1", value)
    return number


def positive_float(value: Any) -> float:
    """A number above 0."""
    number = _real(value, "a number above 0")
    if not 0.0 < number < float("inf"):
        raise _fail("a number above 0", value)
    return number


def cpu_quota(value: Any) -> float:
    """Cores, as a number or a string: ``8``, ``"8.0"``, or Kubernetes millicores ``"500m"``."""
    expected = 'a number of CPU cores above 0, such as 8, "8.0" or "500m"'
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:
            raise _fail(expected, value) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise _fail(expected, value)
    if not 0.0 < number < float("inf"):
        raise _fail(expected, value)
    return number


def duration(value: Any) -> float:
    """A duration above zero (see `parse_duration`), in seconds."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise _fail('a duration above zero such as "30s" or "200ms"', value)
    return seconds


def duration_or_zero(value: Any) -> float:
    """A duration of zero or more (see `parse_duration`), in seconds."""
    seconds = parse_duration(value)
    if seconds < 0:
        raise _fail('a duration such as "0s" or "5s"', value)
    return seconds


def size(value: Any) -> int:
    """A size above zero (see `parse_size`), in bytes."""
    if isinstance(value, float):
        raise _fail('a size such as "512MB" or a whole number of bytes', value)
    number = parse_size(value)
    if number <= 0:
        raise _fail('a size above zero such as "512MB"', value)
    return number


def text(value: Any) -> str:
    """Any non-empty string."""
    if not isinstance(value, str) or not value:
        raise _fail("a non-empty string", value)
    return str(value)


def path(value: Any) -> Path:
    """A filesystem path; a relative one is made absolute against the working directory."""
    return Path(text(value)).absolute()


def parse_address(value: Any) -> Address:
    """``"host:port"``: host an IPv4 address, a DNS name or ``[IPv6]``; port 1..65535."""
    expected = 'an address "host:port" such as "0.0.0.0:8080" or "[::1]:8080"'
    if not isinstance(value, str):
        raise _fail(expected, value)
    if value.startswith("["):
        host, closing, port = value[1:].partition("]:")
        if not closing:
            raise _fail(expected, value)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _fail(expected + " (brackets hold an IPv6 address)", value) from None
    else:
        host, colon, port = value.rpartition(":")
        if not colon or not host:
            raise _fail(expected, value)
        if ":" in host:
            raise _fail(expected + " (put an IPv6 address in brackets)", value)
        labels = host.split(".")
        if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
            raise _fail(expected + " (the host is not a valid name or address)", value)
        if all(label.isdigit() for label in labels):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise _fail(expected + " (the host is not a valid IPv4 address)", value) from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _fail(expected + " (the port must be 1..65535)", value)
    return Address(host, int(port))


def advertise_address(value: Any) -> Address | str:
    """``"auto"`` or an address."""
    if value == "auto":
        return "auto"
    return parse_address(value)


def _choice(options: dict[str, str], upper: bool = False) -> Parser:
    shown = ", ".join(sorted(set(options))).upper() if upper else ", ".join(options)

    def parse(value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in options:
            return options[value.strip().lower()]
        raise _fail(f"one of {shown}", value)

    return parse


def _array(item: Parser, expected: str) -> Parser:
    def parse(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _fail(f"an array of {expected}", value)
        return tuple(_each(item, value))

    return parse


def _each(item: Parser, values: list[Any]) -> list[Any]:
    """Parse every element, naming the position of the first bad one (counting from 1)."""
    parsed = []
    for position, element in enumerate(values, start=1):
        try:
            parsed.append(item(element))
        except ValueError as exc:
            raise ValueError(f"item {position}: {exc}") from None
    return parsed


def seed(value: Any) -> str:
    """One seed node, ``"host:port"``; kept as written (names resolve when joining)."""
    parse_address(value)
    return str(value)


def nats_url(value: Any) -> str:
    """A NATS server URL: ``nats://``, ``tls://``, ``ws://`` or ``wss://`` with a host."""
    parts = urlsplit(value) if isinstance(value, str) else None
    try:
        port = parts.port if parts is not None else None
    except ValueError:
        port = -1
    if (
        parts is None
        or parts.scheme not in ("nats", "tls", "ws", "wss")
        or not parts.hostname
        or port == -1
    ):
        raise _fail('a NATS URL such as "nats://nats.internal:4222" or "tls://..."', value)
    return str(value)


def node_name(value: Any) -> str:
    """A node name: a letter or digit, then letters, digits, ``-`` or ``_``; at most 64."""
    if not isinstance(value, str) or not NODE_NAME.fullmatch(value):
        raise _fail(
            'a node name such as "caxton-node-1" (letters, digits, "-" and "_", '
            "at most 64, starting with a letter or digit)",
            value,
        )
    return str(value)


def histogram_buckets(value: Any) -> tuple[float, ...]:
    """Strictly increasing positive numbers (seconds), at least one."""
    expected = "a non-empty array of strictly increasing numbers above 0"
    if not isinstance(value, list) or not value:
        raise _fail(expected, value)
    buckets = tuple(_each(positive_float, value))
    if any(low >= high for low, high in itertools.pairwise(buckets)):
        raise ValueError(f"expected {expected}, got {list(buckets)}")
    return buckets


def metrics_prefix(value: Any) -> str:
    """A Prometheus metric-name prefix: a letter or ``_`` then letters, digits, ``_``."""
    if not isinstance(value, str) or not _PROMETHEUS_PREFIX.fullmatch(value):
        raise _fail('a Prometheus name prefix such as "caxton" ([a-zA-Z_][a-zA-Z0-9_]*)', value)
    return str(value)


def otlp_url(value: Any) -> str:
    """An ``http://``, ``https://`` or ``grpc://`` URL with a host (`caxton.config.otlp`)."""
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https", "grpc") or not parts.hostname:
        raise _fail(
            'an http(s) URL such as "http://otel-collector:4318" or a grpc:// URL such as '
            '"grpc://otel-collector:4317"',
            value,
        )
    return str(value)


def header_name(value: Any) -> str:
    """An HTTP header field name."""
    if not isinstance(value, str) or not _HEADER_TOKEN.fullmatch(value):
        raise _fail('an HTTP header name such as "X-API-Key"', value)
    return str(value)


def origin(value: Any) -> str:
    """A CORS origin: ``"*"`` or ``scheme://host[:port]`` without a path."""
    if value == "*":
        return "*"
    parts = urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise _fail('an origin such as "https://dashboard.example.com" or "*"', value)
    return str(value).rstrip("/")


def network(value: Any) -> str:
    """An IP address or network (``"10.0.1.0/24"``, ``"127.0.0.1"``, ``"::1"``), normalised."""
    try:
        if isinstance(value, str):
            return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        pass
    raise _fail('an IP address or network such as "10.0.1.0/24"', value)


def http_method(value: Any) -> str:
    """A standard HTTP method, any case, stored upper-case."""
    if isinstance(value, str) and value.upper() in _HTTP_METHODS:
        return value.upper()
    raise _fail("an HTTP method (" + ", ".join(_HTTP_METHODS) + ")", value)


def secret(value: Any) -> schema.Secret:
    """A string; never echoed in an error (the loader handles unset variables)."""
    if not isinstance(value, str):
        raise ValueError("expected a string (the value is not shown because it is a secret)")
    return schema.Secret(str(value))


@dataclass(frozen=True, slots=True)
class Section:
    """One ``[section]``: the dataclass it builds and a parser per key."""

    cls: type[Any]
    keys: dict[str, Parser]


SECTIONS: dict[str, Section] = {
    "runtime": Section(
        schema.RuntimeConfig,
        {
            "max_agents": count,
            "max_concurrent_executions": count,
            "wasm_memory_limit": size,
            "wasm_stack_limit": size,
            "execution_timeout": duration,
            "agent_idle_timeout": duration,
            "cpu_quota": cpu_quota,
            "memory_limit": size,
            "temp_storage_limit": size,
            "agent_startup_timeout": duration,
            "agent_shutdown_timeout": duration,
            "gc_interval": duration,
            "memory_pressure_threshold": fraction,
            "agent_memory_reclaim": boolean,
            "max_message_size": size,
            "mailbox_capacity": count,
            "mailbox_max_bytes": size,
            "max_module_size": size,
            "fuel": count,
            "max_sends_per_message": count,
            "max_external_sends_per_second": count,
            "max_dead_letters_per_second": count,
            "agent_log_bytes_per_second": size,
            "agent_log_lines_per_second": count,
            "agent_kv_max_keys": count,
            "agent_kv_max_bytes": size,
            "agent_kv_cache_size": size,
            "agent_max_timers": count,
        },
    ),
    "networking": Section(
        schema.NetworkingConfig,
        {
            "bind_address": parse_address,
            "metrics_address": parse_address,
            "admin_address": parse_address,
            "max_connections": count,
            "connection_timeout": duration,
            "request_timeout": duration,
            "keepalive_timeout": duration,
            "tls_enabled": boolean,
            "tls_cert_path": path,
            "tls_key_path": path,
            "tls_ca_path": path,
            "max_request_size": size,
            "drain_delay": duration_or_zero,
            "tls_client_auth": _choice(
                {"none": "none", "optional": "optional", "required": "required"}
            ),
        },
    ),
    "coordination": Section(
        schema.CoordinationConfig,
        {
            "local_state_path": path,
            "journal_mode": _choice(
                {mode.lower(): mode for mode in ("WAL", "DELETE", "TRUNCATE", "PERSIST")}
                | {"memory": "MEMORY", "off": "OFF"},
                upper=True,
            ),
            "cluster_enabled": boolean,
            "bind_addr": parse_address,
            "advertise_addr": advertise_address,
            "seeds": _array(seed, '"host:port" strings'),
            "gossip_interval": duration,
            "probe_interval": duration,
            "nats_server": path,
            "nats_url": nats_url,
            "node_name": node_name,
            "cluster_secret": secret,
        },
    ),
    "observability": Section(
        schema.ObservabilityConfig,
        {
            "log_level": _choice(_LOG_LEVELS),
            "log_format": _choice({"json": "json", "text": "text"}),
            "log_file": path,
            "log_rotation": _choice({"daily": "daily", "hourly": "hourly", "never": "never"}),
            "log_retention_days": days_or_forever,
            "enable_metrics": boolean,
            "metrics_prefix": metrics_prefix,
            "histogram_buckets": histogram_buckets,
            "enable_tracing": boolean,
            "trace_sample_rate": fraction,
            "otlp_endpoint": otlp_url,
            "otlp_timeout": duration,
            "otlp_protocol": _choice(
                {"grpc": "grpc", "http/protobuf": "http/protobuf", "http": "http/protobuf"}
            ),
            "otlp_max_queue_size": count,
        },
    ),
    "security": Section(
        schema.SecurityConfig,
        {
            "auth_enabled": boolean,
            "jwt_secret": secret,
            "jwt_expiry": duration,
            "api_key_header": header_name,
            "rate_limit_enabled": boolean,
            "rate_limit_per_second": positive_float,
            "rate_limit_burst": count,
            "cors_enabled": boolean,
            "cors_origins": _array(origin, "origins"),
            "cors_methods": _array(http_method, "HTTP methods"),
            "trusted_proxies": _array(network, "IP addresses or networks"),
        },
    ),
}

#: The log-level parser, shared with the ``CAXTON_LOG_LEVEL`` override.
parse_log_level: Parser = SECTIONS["observability"].keys["log_level"]
