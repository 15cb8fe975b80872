"""The runtime's ports to the rest of the node, each a small Protocol with an in-memory version.

* `KvBackend`: durable per-agent key/value (SQLite in a node), read a key at a time through
  `kvstore.AgentKv`'s cache. `get` and `usage` may block briefly (worker threads); `set`/`delete`
  are called on worker threads in the order the agent made them and must not block (the SQLite
  one hands them to its writer thread), and a later `get` must see them (read your writes).
* `SnapshotBackend`: hibernated agents' linear memory and mutable globals (`save`/`load`/
  `delete`, worker threads).
* Message delivery is the port in `caxton.runtime.delivery` (`Delivery`).
* `AgentEvents`: what the runtime tells its owner, always on the event loop thread, batched.
* Time comes from a `caxton.clock.Clock` (injectable so maintenance is tested without sleeping).
"""

from __future__ import annotations

import threading
from typing import Protocol

from caxton.errors import AgentFailure
from caxton.runtime.agent import AgentState
from caxton.runtime.sandbox.instance import Snapshot

__all__ = [
    "AgentEvents",
    "KvBackend",
    "MemoryKv",
    "MemorySnapshots",
    "NullEvents",
    "SnapshotBackend",
]


class KvBackend(Protocol):
    """Durable per-agent key/value storage.

    `set` and `delete` are called from worker threads and return once the change is durable;
    they raise `caxton.errors.StorageError` when it could not be made (nothing changed).
    """

    def get(self, agent: str, key: bytes) -> bytes | None: ...
    def usage(self, agent: str) -> tuple[int, int]:
        """(keys, bytes of keys and values) the agent stores."""
        ...

    def set(self, agent: str, key: bytes, value: bytes) -> None: ...
    def delete(self, agent: str, key: bytes) -> None: ...
    def drop(self, agent: str) -> None: ...


class SnapshotBackend(Protocol):
    """Snapshots (linear memory and mutable globals) of hibernated agents."""

    def save(self, agent: str, snapshot: Snapshot) -> None: ...
    def load(self, agent: str) -> Snapshot | None: ...
    def delete(self, agent: str) -> None: ...


class AgentEvents(Protocol):
    """Notifications to the runtime's owner (called on the event loop thread)."""

    def message_failed(self, name: str, data: bytes, error: AgentFailure) -> None: ...
    def agent_state_changed(self, name: str, state: AgentState) -> None: ...


class NullEvents:
    """Ignores every event."""

    def message_failed(self, name: str, data: bytes, error: AgentFailure) -> None:
        pass

    def agent_state_changed(self, name: str, state: AgentState) -> None:
        pass


class MemoryKv:
    """An in-process `KvBackend` (tests, embedded use)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[bytes, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, agent: str, key: bytes) -> bytes | None:
        with self._lock:
            return self.data.get(agent, {}).get(key)

    def usage(self, agent: str) -> tuple[int, int]:
        with self._lock:
            pairs = self.data.get(agent, {})
            return len(pairs), sum(len(k) + len(v) for k, v in pairs.items())

    def set(self, agent: str, key: bytes, value: bytes) -> None:
        with self._lock:
            self.data.setdefault(agent, {})[key] = value

    def delete(self, agent: str, key: bytes) -> None:
        with self._lock:
            self.data.get(agent, {}).pop(key, None)

    def drop(self, agent: str) -> None:
        with self._lock:
            self.data.pop(agent, None)


class MemorySnapshots:
    """An in-process `SnapshotBackend`."""

    def __init__(self) -> None:
        self.data: dict[str, Snapshot] = {}

    def save(self, agent: str, snapshot: Snapshot) -> None:
        self.data[agent] = snapshot

    def load(self, agent: str) -> Snapshot | None:
        return self.data.get(agent)

    def delete(self, agent: str) -> None:
        self.data.pop(agent, None)
