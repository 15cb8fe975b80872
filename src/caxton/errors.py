"""Every error Caxton raises on purpose, under one base class.

The tree::

    Error                         anything Caxton raises on purpose
    ├── ConfigError               the configuration is wrong (names file, key and what was expected)
    ├── InvalidRequest            a request is malformed (names the field)
    ├── StorageError              the state store failed or is unusable
    │   └── StateLockedError      another process holds the state file (a node is running on it)
    ├── AgentError                something about one agent
    │   ├── AgentNotFound         no agent has that name
    │   ├── AgentAlreadyExists    the name is taken
    │   ├── InvalidWasm           the module is not one Caxton can run (says what is wrong)
    │   ├── ModuleTooLarge        the module is above `max_module_size`
    │   ├── AgentStartFailed      `caxton_init` failed or took too long
    │   ├── AgentLimitReached     `max_agents` agents are deployed already
    │   └── AgentFailure          handling one message failed (trap, deadline, fuel, memory, exit)
    ├── MessagingError            a message could not be accepted or delivered
    │   ├── InvalidMessage        the envelope is malformed (names the field)
    │   ├── MessageTooLarge       above the configured size limit
    │   ├── WouldBlock            a bounded mailbox is full (backpressure)
    │   └── MailboxClosed         the mailbox was closed locally
    ├── SecurityError             authentication or authorisation failed
    └── ClusterError              the cluster cannot work (the local nats-server would not start)

Each class carries a stable ``code`` (the API error code of docs/api.md) and optional
``details``, so the HTTP layer can turn any of them into the JSON error envelope without knowing
the class.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AgentAlreadyExists",
    "AgentError",
    "AgentFailure",
    "AgentLimitReached",
    "AgentNotFound",
    "AgentStartFailed",
    "ClusterError",
    "ConfigError",
    "Error",
    "InvalidMessage",
    "InvalidRequest",
    "InvalidWasm",
    "MailboxClosed",
    "MessageTooLarge",
    "MessagingError",
    "ModuleTooLarge",
    "SecurityError",
    "StateLockedError",
    "StorageError",
    "WouldBlock",
]


class Error(Exception):
    """Anything Caxton raises on purpose."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class ConfigError(Error):
    """The configuration is wrong; the message names the file, the key and what was expected."""

    code = "INVALID_REQUEST"
    status = 400


class InvalidRequest(Error):
    """A request is malformed; the message names the field and what was expected."""

    code = "INVALID_REQUEST"
    status = 400


class StorageError(Error):
    """The state store failed or cannot be used."""

    code = "UNAVAILABLE"
    status = 503


class StateLockedError(StorageError):
    """Another process holds the state file (a node is running on it)."""


class AgentError(Error):
    """Something went wrong with one agent."""


class AgentNotFound(AgentError):
    """No agent has that name."""

    code = "AGENT_NOT_FOUND"
    status = 404


class AgentAlreadyExists(AgentError):
    """An agent with that name is already deployed."""

    code = "AGENT_ALREADY_EXISTS"
    status = 409


class InvalidWasm(AgentError):
    """The module is not one Caxton can run; the message says what is wrong with it."""

    code = "INVALID_WASM"
    status = 400


class ModuleTooLarge(AgentError):
    """The uploaded module is larger than `runtime.max_module_size`."""

    code = "PAYLOAD_TOO_LARGE"
    status = 413


class AgentStartFailed(AgentError):
    """The agent's `caxton_init` returned non-zero, trapped or took too long."""

    code = "INVALID_WASM"
    status = 400


class AgentLimitReached(AgentError):
    """`max_agents` agents are deployed already."""

    code = "RESOURCE_LIMIT_EXCEEDED"
    status = 429


class AgentFailure(AgentError):
    """Handling one message failed: a trap, the deadline, fuel, the memory limit or an exit."""

    def __init__(self, message: str, *, cause: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        #: One of "trap", "deadline", "out_of_fuel", "stack_overflow", "memory_limit",
        #: "exit", "returned_error".
        self.cause = cause


class MessagingError(Error):
    """A message could not be accepted or delivered."""


class InvalidMessage(MessagingError):
    """The message envelope is malformed; the message names the field."""

    code = "INVALID_REQUEST"
    status = 400


class MessageTooLarge(MessagingError):
    """The message is above the configured size limit."""

    code = "PAYLOAD_TOO_LARGE"
    status = 413


class WouldBlock(MessagingError):
    """A bounded mailbox is full: the caller should retry later (backpressure)."""

    code = "RESOURCE_LIMIT_EXCEEDED"
    status = 429


class MailboxClosed(MessagingError):
    """The mailbox was closed by this node (the agent stopped or the node is shutting down)."""

    code = "UNAVAILABLE"
    status = 503


class SecurityError(Error):
    """Authentication or authorisation failed."""

    code = "UNAUTHORIZED"
    status = 401


class ClusterError(Error):
    """The cluster cannot work: the node's nats-server would not start or keep running."""

    code = "UNAVAILABLE"
    status = 503
