"""The node's local state: SQLite in WAL mode, written by one thread with group commit.

This package is the only one that imports ``sqlite3``; everything it raises is a
`caxton.errors` class (`StorageError`, `StateLockedError`, or the agent errors its repositories
raise on purpose). Open the store with ``await Storage.open(path)``; back it up while the node
runs with `backup_database` (or ``sqlite3 STATE ".backup FILE"``), and restore with the node
stopped with `restore_database`.
"""

from caxton.storage._connection import Connection, Params, Row
from caxton.storage._core import StorageState, StorageStatistics
from caxton.storage._health import is_storage_failure
from caxton.storage._lock import is_locked
from caxton.storage.agents import (
    AgentChanges,
    AgentRecord,
    AgentsRepository,
    VersionRecord,
    module_hash,
)
from caxton.storage.backup import BackupResult, RestoreResult, backup_database, restore_database
from caxton.storage.kv import KvRepository
from caxton.storage.messages import MessagesRepository
from caxton.storage.outbox import OutboxEntry, OutboxRepository
from caxton.storage.scheduled import ScheduledRecord, ScheduledRepository
from caxton.storage.schema import SCHEMA_VERSION, Migration
from caxton.storage.snapshots import SnapshotsRepository
from caxton.storage.sqlite import Storage

__all__ = [
    "SCHEMA_VERSION",
    "AgentChanges",
    "AgentRecord",
    "AgentsRepository",
    "BackupResult",
    "Connection",
    "KvRepository",
    "MessagesRepository",
    "Migration",
    "OutboxEntry",
    "OutboxRepository",
    "Params",
    "RestoreResult",
    "Row",
    "ScheduledRecord",
    "ScheduledRepository",
    "SnapshotsRepository",
    "Storage",
    "StorageState",
    "StorageStatistics",
    "VersionRecord",
    "backup_database",
    "is_locked",
    "is_storage_failure",
    "module_hash",
    "restore_database",
]
