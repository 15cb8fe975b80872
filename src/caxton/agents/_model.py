"""What the agent service takes and gives: `DeployRequest`, `AgentInfo`, and the input rules.

Every rule a deploy request must follow is checked here, before anything is compiled or
stored, and each failure is an `InvalidRequest` that names the field and the rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from caxton.errors import InvalidRequest
from caxton.wire.timestamps import rfc3339

__all__ = [
    "NAME_PATTERN",
    "AgentInfo",
    "DeployRequest",
    "check_env",
    "check_limits",
    "check_name",
]

#: Agent names, unique in the cluster (docs/messaging.md, "The message").
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeployRequest:
    """One deploy: the agent's name, its module and how it runs.

    ``memory_limit`` (bytes) may only lower ``runtime.wasm_memory_limit``; ``fuel`` (per
    message) needs ``runtime.fuel`` set, which turns fuel metering on in the engine;
    ``grant_dir`` preopens ``<data_dir>/agents/<name>/data`` as ``/data`` for the agent.
    """

    name: str
    wasm: bytes
    env: Mapping[str, str] = field(default_factory=dict)
    memory_limit: int | None = None
    fuel: int | None = None
    grant_dir: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentInfo:
    """One agent as the API shows it (`as_dict` is its JSON form)."""

    name: str
    state: str  # loaded | running | stopped | failed | hibernated
    kind: str  # reactor | command
    version: int
    versions: tuple[int, ...]
    module_sha256: str
    module_size: int
    env: Mapping[str, str]
    memory_limit: int  # bytes
    fuel: int | None
    execution_timeout: float  # seconds
    mailbox_capacity: int
    data_dir: str | None
    created_at: float  # unix seconds
    updated_at: float
    messages_handled: int
    failures: int
    restarts: int
    last_error: str | None
    memory_bytes: int
    mailbox_depth: int
    last_active: float | None  # unix seconds
    #: Why this reactor is never hibernated (a snapshot could not keep its state), or None.
    unsaved_state: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (times in RFC 3339, UTC)."""
        return {
            "name": self.name,
            "state": self.state,
            "kind": self.kind,
            "version": self.version,
            "versions": list(self.versions),
            "module_sha256": self.module_sha256,
            "module_size": self.module_size,
            "env": dict(self.env),
            "limits": {
                "memory_bytes": self.memory_limit,
                "fuel": self.fuel,
                "execution_timeout_seconds": self.execution_timeout,
                "mailbox_capacity": self.mailbox_capacity,
            },
            "grants": {"data_dir": self.data_dir},
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "counters": {
                "messages_handled": self.messages_handled,
                "failures": self.failures,
                "restarts": self.restarts,
            },
            "last_error": self.last_error,
            "memory_bytes": self.memory_bytes,
            "mailbox_depth": self.mailbox_depth,
            "last_active": None if self.last_active is None else rfc3339(self.last_active),
        }


def check_name(name: object) -> str:
    """``name`` if it follows the naming rule, else `InvalidRequest` naming the rule."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidRequest(
            f"name: {name!r} is not a valid agent name: use 1-63 characters, lowercase "
            "letters, digits and '-', starting with a letter (^[a-z][a-z0-9-]{0,62}$)",
            details={"field": "name", "pattern": NAME_PATTERN.pattern},
        )
    return name


def check_env(env: object) -> dict[str, str]:
    """A copy of ``env`` if every key and value is valid, else `InvalidRequest`."""
    if not isinstance(env, Mapping):
        raise InvalidRequest("env: expected a mapping of strings", details={"field": "env"})
    checked: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidRequest(
                f"env: {key!r}={value!r}: keys and values must be strings",
                details={"field": "env", "key": str(key)},
            )
        if not key or "=" in key or "\0" in key:
            raise InvalidRequest(
                f"env: {key!r} is not a valid variable name (not empty, no '=' and no NUL)",
                details={"field": "env", "key": key},
            )
        if "\0" in value:
            raise InvalidRequest(
                f"env: the value of {key!r} contains a NUL character",
                details={"field": "env", "key": key},
            )
        checked[key] = value
    return checked


def check_limits(
    memory_limit: int | None, fuel: int | None, *, max_memory: int, fuel_enabled: bool
) -> None:
    """`InvalidRequest` when a per-agent limit is not allowed on this node."""
    if memory_limit is not None and (
        isinstance(memory_limit, bool) or not isinstance(memory_limit, int) or memory_limit <= 0
    ):
        raise InvalidRequest(
            f"memory_limit: expected a positive number of bytes, got {memory_limit!r}",
            details={"field": "memory_limit"},
        )
    if memory_limit is not None and memory_limit > max_memory:
        raise InvalidRequest(
            f"memory_limit: {memory_limit} bytes is above runtime.wasm_memory_limit "
            f"({max_memory} bytes); an agent may only lower it",
            details={"field": "memory_limit", "maximum": max_memory},
        )
    if fuel is None:
        return
    if isinstance(fuel, bool) or not isinstance(fuel, int) or fuel <= 0:
        raise InvalidRequest(
            f"fuel: expected a positive integer, got {fuel!r}", details={"field": "fuel"}
        )
    if not fuel_enabled:
        raise InvalidRequest(
            "fuel: fuel metering is off on this node; set [runtime] fuel to allow per-agent fuel",
            details={"field": "fuel"},
        )
