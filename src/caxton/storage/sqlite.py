"""`Storage`: the node's SQLite state store, with its typed repositories as attributes.

See `StorageCore` for the lifecycle and the threading model (one writer thread with group
commit, a pool of readers, an exclusive lock file), and each repository module for its data.
`Storage.__init__` is the one place the repositories are made and handed the store.
"""

from __future__ import annotations

from pathlib import Path

from caxton.storage._core import DEFAULT_READERS, StorageCore
from caxton.storage.agents import AgentsRepository
from caxton.storage.kv import KvRepository
from caxton.storage.messages import MessagesRepository
from caxton.storage.outbox import OutboxRepository
from caxton.storage.scheduled import ScheduledRepository
from caxton.storage.snapshots import SnapshotsRepository

__all__ = ["Storage"]


class Storage(StorageCore):
    """The node's state store. Open it with ``await Storage.open(path)`` or ``async with``.

    Example::

        async with await Storage.open(config.coordination.local_state_path) as storage:
            record = await storage.agents.create(AgentRecord(name="echo"), wasm)

    Each repository writes and reads through this store (one writer, one reader pool):
    ``agents`` (records, versions, modules), ``kv``, ``snapshots``, ``scheduled`` (timers)
    ``messages`` (history, pending deliveries, dead letters) and ``outbox`` (messages for other
    nodes until acknowledged, and the ids received from other nodes).

    Custom queries go through `write` / `write_nowait` / `write_sync` and `read` /
    `read_sync` with a callable that receives a `Connection`; errors come out as
    `StorageError` (or the `caxton.errors` class a repository raises on purpose).
    """

    def __init__(
        self, path: Path, *, journal_mode: str = "WAL", readers: int = DEFAULT_READERS
    ) -> None:
        super().__init__(path, journal_mode=journal_mode, readers=readers)
        self.agents = AgentsRepository(self)
        self.kv = KvRepository(self)
        self.snapshots = SnapshotsRepository(self)
        self.scheduled = ScheduledRepository(self)
        self.messages = MessagesRepository(self)
        self.outbox = OutboxRepository(self)
