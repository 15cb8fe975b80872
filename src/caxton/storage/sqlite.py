"""`Storage`: the node's SQLite state store, with every typed repository on one object.

See `StorageCore` for the lifecycle and the threading model (one writer thread with group
commit, a pool of readers, an exclusive lock file), and each repository module for its data.
"""

from __future__ import annotations

from caxton.storage.agents import AgentsRepository
from caxton.storage.kv import KvRepository
from caxton.storage.messages import MessagesRepository
from caxton.storage.scheduled import ScheduledRepository
from caxton.storage.snapshots import SnapshotsRepository

__all__ = ["Storage"]


class Storage(
    AgentsRepository,
    KvRepository,
    SnapshotsRepository,
    ScheduledRepository,
    MessagesRepository,
):
    """The node's state store. Open it with ``await Storage.open(path)`` or ``async with``.

    Example::

        async with await Storage.open(config.coordination.local_state_path) as storage:
            record = await storage.create_agent(AgentRecord(name="echo"), wasm)

    Custom queries go through `write` / `write_nowait` / `write_sync` and `read` /
    `read_sync` with a callable that receives a `Connection`; errors come out as
    `StorageError` (or the `caxton.errors` class a repository raises on purpose).
    """
