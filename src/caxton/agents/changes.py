"""`AgentChanges`: who wants to hear that one of this node's agents changed.

The agent service calls `AgentChanges.notify` after each of its operations (deploy, upgrade,
rollback, stop, start, remove), and `PersistingEvents` after each state change the runtime makes
on its own (failed, hibernated, woken). A listener gets the agent's name only and reads what it
needs (`AgentService.summary`); it runs on the event loop thread and must not block. The
cluster's registry is the listener that matters; a single node has none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AgentChanges", "AgentSummary"]

log = logging.getLogger("caxton.agents")

#: Called with the name of an agent that changed (or was removed).
Listener = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class AgentSummary:
    """What other nodes need to know of one agent: where it is listed, and its deploy time."""

    name: str
    state: str
    version: int
    created_at: float  # unix seconds of the first deploy
    updated_at: float


class AgentChanges:
    """Listeners to agent changes (event loop thread)."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def add(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(name)`` on every change; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def notify(self, name: str) -> None:
        """Tell every listener that ``name`` changed (a failing listener is logged)."""
        for listener in self._listeners:
            try:
                listener(name)
            except Exception:
                log.exception("an agent change listener failed on %s", name)
