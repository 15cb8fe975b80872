"""Checks that span several keys, run once every key has been parsed.

Each check returns ``"<section.key>: <what is wrong>"`` lines; the loader prefixes the file.
A check is skipped when a key it reads failed to parse (that key already has its own error).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from caxton.config._units import format_size
from caxton.config.otlp import otlp_target
from caxton.config.schema import Address, Config
from caxton.security.tokens import secret_problem

__all__ = ["JwtSource", "cross_check"]

#: A wasm32 linear memory cannot grow past 4 GiB.
_WASM32_MAX_MEMORY = 4 * 1024**3
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})


@dataclass(frozen=True, slots=True)
class JwtSource:
    """Where ``security.jwt_secret`` came from, so that a missing secret is explained well."""

    given: bool = False  # the key is in the file
    unset_variable: str | None = None  # it was "${NAME}" and NAME is not set


def cross_check(
    config: Config, *, failed: set[str], jwt: JwtSource, require_secret: bool = True
) -> list[str]:
    """Every cross-key problem of `config`, one line each (empty when there is none).

    `require_secret` False skips the JWT secret check (for commands that never use it).
    """
    return [
        *(_check_secret(config, failed, jwt) if require_secret else ()),
        *_check_tls(config, failed),
        *_check_memory(config, failed),
        *_check_listeners(config, failed),
        *_check_nats(config, failed),
        *_check_otlp(config, failed),
    ]


def _check_secret(config: Config, failed: set[str], jwt: JwtSource) -> Iterator[str]:
    security = config.security
    if not security.auth_enabled or "security.jwt_secret" in failed:
        return
    need = "security.jwt_secret: auth_enabled = true needs a JWT secret"
    if jwt.unset_variable is not None:
        yield f"{need}, but {jwt.unset_variable} is not set in the environment"
    elif security.jwt_secret is None:
        yield f'{need}; set jwt_secret = "${{JWT_SECRET}}" and export JWT_SECRET'
    elif not security.jwt_secret.reveal():
        yield f"{need}, but the value is empty"
    elif (problem := secret_problem(security.jwt_secret.reveal())) is not None:
        yield f"security.jwt_secret: {problem} (the node would refuse to start with it)"


def _check_file(key: str, path: Path | None, required: bool) -> Iterator[str]:
    if path is None:
        if required:
            yield f"networking.{key}: tls_enabled = true needs {key}"
    elif not path.exists():
        yield f"networking.{key}: file {path} does not exist"
    elif not path.is_file():
        yield f"networking.{key}: {path} is not a file"
    elif not os.access(path, os.R_OK):
        yield f"networking.{key}: file {path} is not readable by this user"


def _check_tls(config: Config, failed: set[str]) -> Iterator[str]:
    networking = config.networking
    client_auth = networking.tls_client_auth
    if client_auth != "none" and "networking.tls_client_auth" not in failed:
        if not networking.tls_enabled:
            yield f'networking.tls_client_auth: "{client_auth}" needs tls_enabled = true'
        elif networking.tls_ca_path is None and "networking.tls_ca_path" not in failed:
            yield (
                f'networking.tls_client_auth: "{client_auth}" needs tls_ca_path (the CA '
                "that signs the client certificates)"
            )
    if not networking.tls_enabled:
        return
    for key, path, required in (
        ("tls_cert_path", networking.tls_cert_path, True),
        ("tls_key_path", networking.tls_key_path, True),
        ("tls_ca_path", networking.tls_ca_path, False),
    ):
        if f"networking.{key}" not in failed:
            yield from _check_file(key, path, required)


def _check_memory(config: Config, failed: set[str]) -> Iterator[str]:
    runtime = config.runtime
    per_agent = runtime.wasm_memory_limit
    if "runtime.wasm_memory_limit" in failed:
        return
    if per_agent > _WASM32_MAX_MEMORY:
        yield (
            f"runtime.wasm_memory_limit: {format_size(per_agent)} is more than a 32-bit "
            f"WebAssembly memory can hold (4GB)"
        )
    if "runtime.memory_limit" not in failed and per_agent > runtime.memory_limit:
        yield (
            f"runtime.wasm_memory_limit: {format_size(per_agent)} is more than "
            f"runtime.memory_limit ({format_size(runtime.memory_limit)}), so no agent could "
            f"reach its limit"
        )
    module, request = runtime.max_module_size, config.networking.max_request_size
    if not {"runtime.max_module_size", "networking.max_request_size"} & failed and module > request:
        yield (
            f"runtime.max_module_size: {format_size(module)} is more than "
            f"networking.max_request_size ({format_size(request)}), so such a module could "
            f"not be uploaded"
        )


def _collides(first: Address, second: Address) -> bool:
    if first.port != second.port:
        return False
    return first.host == second.host or bool({first.host, second.host} & _WILDCARD_HOSTS)


def _check_listeners(config: Config, failed: set[str]) -> Iterator[str]:
    """Two TCP listeners of this node on the same port and overlapping hosts cannot both bind."""
    listeners = [
        ("networking.bind_address", config.networking.bind_address),
        ("networking.admin_address", config.networking.admin_address),
    ]
    if config.observability.enable_metrics:
        listeners.append(("networking.metrics_address", config.networking.metrics_address))
    if config.coordination.cluster_enabled:
        listeners.append(("coordination.bind_addr", config.coordination.bind_addr))
    listeners = [(key, address) for key, address in listeners if key not in failed]
    for index, (key, address) in enumerate(listeners):
        for earlier_key, earlier in listeners[:index]:
            if _collides(earlier, address):
                yield f"{key}: {address} is already used by {earlier_key} ({earlier})"
                break


def _check_nats(config: Config, failed: set[str]) -> Iterator[str]:
    """``nats_url`` uses an existing NATS: the keys of a node's own nats-server then do nothing."""
    coordination = config.coordination
    if coordination.nats_url is None or "coordination.nats_url" in failed:
        return
    for key, value in (
        ("nats_server", coordination.nats_server),
        ("cluster_secret", coordination.cluster_secret),
    ):
        if value is not None and f"coordination.{key}" not in failed:
            yield (
                f"coordination.{key}: not used when nats_url is set (the node then starts no "
                f"nats-server of its own); remove one of the two"
            )


def _check_otlp(config: Config, failed: set[str]) -> Iterator[str]:
    """``otlp_endpoint`` agrees with ``otlp_protocol``: no path for gRPC, no grpc:// for HTTP."""
    observability = config.observability
    endpoint = observability.otlp_endpoint
    if endpoint is None or failed & {"observability.otlp_endpoint", "observability.otlp_protocol"}:
        return
    try:
        otlp_target(endpoint, observability.otlp_protocol)
    except ValueError as exc:
        key = "otlp_endpoint" if observability.otlp_protocol is None else "otlp_protocol"
        yield f"observability.{key}: {exc}"
