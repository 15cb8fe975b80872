"""The OpenAPI side of the agents API: JSON schemas of its bodies and answers."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AGENT_SCHEMA",
    "BAD_MODULE",
    "DEPLOY_BODY",
    "LIST_SCHEMA",
    "LOGS_SCHEMA",
    "MAX_LOG_LINES",
    "MAX_PAGE",
    "NOT_FOUND",
    "REMOTE_AGENT_SCHEMA",
    "UPGRADE_BODY",
]

MAX_PAGE = 1000
MAX_LOG_LINES = 10_000

_COUNTERS = ("messages_handled", "failures", "restarts")
AGENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,62}$"},
        "state": {"enum": ["loaded", "running", "stopped", "failed", "hibernated"]},
        "kind": {"enum": ["reactor", "command"]},
        "version": {"type": "integer", "description": "the version that runs"},
        "versions": {"type": "array", "description": "stored versions (rollback targets)"},
        "module_sha256": {"type": "string"},
        "module_size": {"type": "integer"},
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "limits": {
            "type": "object",
            "description": "memory_bytes, fuel, execution_timeout_seconds, mailbox_capacity",
        },
        "grants": {"type": "object", "description": "data_dir: the granted directory or null"},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "counters": {
            "type": "object",
            "properties": {c: {"type": "integer"} for c in _COUNTERS},
        },
        "last_error": {"type": ["string", "null"]},
        "memory_bytes": {"type": "integer", "description": "linear memory in use"},
        "mailbox_depth": {"type": "integer"},
        "last_active": {"type": ["string", "null"]},
        "node": {
            "type": ["string", "null"],
            "description": "the node that hosts the agent (null when the cluster is off)",
        },
    },
}
REMOTE_AGENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "an agent hosted on another node, as the cluster's registry lists it",
    "properties": {
        "name": AGENT_SCHEMA["properties"]["name"],
        "node": {"type": "string"},
        "state": AGENT_SCHEMA["properties"]["state"],
        "version": AGENT_SCHEMA["properties"]["version"],
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "node_state": {
            "enum": ["alive", "suspect", "dead", "left", "unknown"],
            "description": "the hosting node's membership state",
        },
    },
}
LIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "agents": {"type": "array", "items": {"anyOf": [AGENT_SCHEMA, REMOTE_AGENT_SCHEMA]}},
        "total": {"type": "integer"},
        "offset": {"type": "integer"},
        "limit": {"type": "integer"},
    },
}
LOGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "time": {"type": "string", "format": "date-time"},
                    "level": {"enum": ["debug", "info", "warn", "error"]},
                    "text": {"type": "string"},
                },
            },
        },
    },
}
_NODE = 'cluster: the node to deploy on, or "auto" (the least-loaded live node)'
_SIZE = {"type": ["string", "integer"], "description": 'bytes, or a size such as "64MB"'}
_JSON_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["name", "wasm"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,62}$"},
        "wasm": {"type": "string", "contentEncoding": "base64"},
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "limits": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"memory": _SIZE, "fuel": {"type": "integer", "minimum": 1}},
        },
        "grants": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"data_dir": {"type": "boolean"}},
        },
        "node": {"type": "string", "description": _NODE},
    },
}
_MULTIPART: dict[str, Any] = {
    "type": "object",
    "required": ["name", "wasm"],
    "properties": {
        "wasm": {"type": "string", "format": "binary", "description": "or a part named module"},
        "name": {"type": "string"},
        "env": {"type": "string", "description": "a JSON object, or K=V (repeatable)"},
        "memory": _SIZE,
        "fuel": {"type": "integer"},
        "grant_dir": {"type": "boolean"},
        "node": {"type": "string", "description": _NODE},
    },
}
_RAW = {"type": "string", "format": "binary"}
DEPLOY_BODY: dict[str, dict[str, Any]] = {
    "application/json": _JSON_BODY,
    "multipart/form-data": _MULTIPART,
    "application/wasm": _RAW,
}
UPGRADE_BODY: dict[str, dict[str, Any]] = {
    "application/json": {
        "type": "object",
        "required": ["wasm"],
        "additionalProperties": False,
        "properties": {"wasm": _JSON_BODY["properties"]["wasm"]},
    },
    "multipart/form-data": {
        "type": "object",
        "properties": {"wasm": _MULTIPART["properties"]["wasm"]},
    },
    "application/wasm": _RAW,
}
NOT_FOUND = {404: "AGENT_NOT_FOUND: no agent has that name"}
BAD_MODULE = {
    400: "INVALID_REQUEST (names the field) or INVALID_WASM (says what is wrong with the "
    "module; details.logs holds the agent's log lines when caxton_init failed)",
    413: "PAYLOAD_TOO_LARGE: the module is above runtime.max_module_size",
}
