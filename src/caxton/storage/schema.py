"""Versioned schema migrations for the state database.

``PRAGMA user_version`` holds the number of the last migration applied. On open, every
migration with a higher number runs in order, each in its own transaction together with the
``user_version`` bump, so a crash mid-way leaves the database at the previous version and the
next open resumes. A database whose version is higher than the newest migration here was written
by a newer Caxton: it is refused rather than guessed at.

To change the schema, append a ``Migration`` to ``MIGRATIONS`` with the next number, written with
`sql` (plain statements) or as a function of a `Connection`. Never edit or reorder a published
migration: nodes in the field have already applied it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from caxton.errors import StorageError
from caxton.storage._connection import Connection, sqlite_errors

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "migrate", "sql"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: its number (1, 2, ...), a one-line summary and what it does."""

    version: int
    summary: str
    apply: Callable[[Connection], None]


def sql(*statements: str) -> Callable[[Connection], None]:
    """A migration body that runs ``statements`` in order."""

    def run(conn: Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return run


def _initial_schema(conn: Connection) -> None:
    sql(
        """CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        """CREATE TABLE modules (
            hash       TEXT PRIMARY KEY,              -- sha256 of wasm, lowercase hex
            wasm       BLOB NOT NULL,
            size       INTEGER NOT NULL,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE agents (
            name             TEXT PRIMARY KEY,
            state            TEXT NOT NULL,
            current_version  INTEGER NOT NULL,
            env              TEXT NOT NULL DEFAULT '{}',   -- JSON
            limits           TEXT NOT NULL DEFAULT '{}',   -- JSON
            grants           TEXT NOT NULL DEFAULT '{}',   -- JSON
            created_at       REAL NOT NULL,
            updated_at       REAL NOT NULL,
            last_error       TEXT,
            restarts         INTEGER NOT NULL DEFAULT 0,
            messages_handled INTEGER NOT NULL DEFAULT 0,
            failures         INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE agent_versions (
            name        TEXT NOT NULL REFERENCES agents(name) ON DELETE CASCADE,
            version     INTEGER NOT NULL,
            module_hash TEXT NOT NULL REFERENCES modules(hash),
            created_at  REAL NOT NULL,
            PRIMARY KEY (name, version)
        )""",
        "CREATE INDEX agent_versions_by_module ON agent_versions(module_hash)",
        """CREATE TABLE kv (
            name  TEXT NOT NULL REFERENCES agents(name) ON DELETE CASCADE,
            key   BLOB NOT NULL,
            value BLOB NOT NULL,
            PRIMARY KEY (name, key)
        ) WITHOUT ROWID""",
        """CREATE TABLE snapshots (
            name     TEXT PRIMARY KEY REFERENCES agents(name) ON DELETE CASCADE,
            memory   BLOB NOT NULL,                  -- packed linear memory (snapshots.py)
            meta     TEXT NOT NULL DEFAULT '{}',     -- JSON
            taken_at REAL NOT NULL
        )""",
        """CREATE TABLE scheduled (
            id     INTEGER PRIMARY KEY AUTOINCREMENT,
            name   TEXT NOT NULL REFERENCES agents(name) ON DELETE CASCADE,
            due_at REAL NOT NULL,                     -- unix time, seconds
            body   BLOB NOT NULL
        )""",
        "CREATE INDEX scheduled_by_due ON scheduled(due_at)",
        "CREATE INDEX scheduled_by_name ON scheduled(name)",
    )(conn)
    conn.execute("INSERT INTO meta(key, value) VALUES ('node_id', ?)", (str(uuid.uuid4()),))
    conn.execute("INSERT INTO meta(key, value) VALUES ('created_at', ?)", (repr(time.time()),))


def _messages_schema(conn: Connection) -> None:
    sql(
        # A conversation's history as chunks: each row holds some consecutive messages of ONE
        # conversation as a JSON array (agents' messages are written in batches, one row per
        # conversation per batch). Order: by id, then position in the array.
        """CREATE TABLE conversation_chunks (
            id              INTEGER PRIMARY KEY,
            conversation_id TEXT NOT NULL,
            count           INTEGER NOT NULL,
            created_at      REAL NOT NULL,             -- unix time, seconds
            messages        BLOB NOT NULL              -- JSON array of message objects
        )""",
        "CREATE INDEX conversation_chunks_by_conversation"
        " ON conversation_chunks(conversation_id, id)",
        # Deliveries to local agents that were not known to be handled when last written:
        # what `recover` delivers again after a restart.
        """CREATE TABLE pending_deliveries (
            seq        INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL,
            receiver   TEXT NOT NULL,
            created_at REAL NOT NULL,
            body       BLOB NOT NULL
        )""",
        "CREATE UNIQUE INDEX pending_deliveries_by_message"
        " ON pending_deliveries(message_id, receiver)",
        """CREATE TABLE dead_letters (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            message_id      TEXT,
            conversation_id TEXT,
            sender          TEXT,
            receiver        TEXT NOT NULL,
            reason          TEXT NOT NULL,
            details         TEXT NOT NULL DEFAULT '{}',   -- JSON
            created_at      REAL NOT NULL,
            redriven_at     REAL,
            body            BLOB NOT NULL
        )""",
    )(conn)


def _outbox_schema(conn: Connection) -> None:
    sql(
        # Messages for agents on other nodes, until the owning node acknowledges them
        # (storage/outbox.py). seq is the insertion order and is never reused (AUTOINCREMENT):
        # an acknowledgement that arrives late cannot delete a newer entry.
        """CREATE TABLE outbox (
            seq             INTEGER PRIMARY KEY AUTOINCREMENT,
            message_id      TEXT NOT NULL,
            node            TEXT NOT NULL,             -- the node that hosts the receiver
            receiver        TEXT NOT NULL,
            body            BLOB NOT NULL,
            enqueued_at     REAL NOT NULL,             -- unix time, seconds
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL              -- unix time, seconds
        )""",
        "CREATE UNIQUE INDEX outbox_by_message ON outbox(message_id, receiver)",
        "CREATE INDEX outbox_by_next_attempt ON outbox(next_attempt_at)",
        "CREATE INDEX outbox_by_node ON outbox(node)",
        # Deliveries committed here from other nodes: a retried one is dropped.
        """CREATE TABLE received_messages (
            message_id  TEXT NOT NULL,
            receiver    TEXT NOT NULL,
            received_at REAL NOT NULL,                 -- unix time, seconds
            PRIMARY KEY (message_id, receiver)
        ) WITHOUT ROWID""",
        "CREATE INDEX received_messages_by_time ON received_messages(received_at)",
    )(conn)


# WARNING: ONLY APPEND TO THIS LIST. Each entry's number is its position (starting at 1) and is
# stored in every database as PRAGMA user_version; editing or reordering a published migration
# leaves existing databases with a schema the code does not expect.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "agents, modules, versions, kv, snapshots, scheduled, meta", _initial_schema),
    Migration(2, "conversation history, pending deliveries, dead letters", _messages_schema),
    Migration(3, "cross-node outbox and received message ids", _outbox_schema),
)

#: The schema version this code writes: the number of the last migration.
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: Connection, path: Path) -> int:
    """Bring the database behind ``conn`` up to `SCHEMA_VERSION`; return the version it had.

    Raises `StorageError` if the database is newer than this code, or if a migration fails (that
    migration is rolled back; the earlier ones stay applied).
    """
    _check_numbering()
    current = database_version(conn)
    if current > SCHEMA_VERSION:
        raise StorageError(
            f"{path} has schema version {current}, but this Caxton only knows versions up to "
            f"{SCHEMA_VERSION}: it was written by a newer Caxton. Upgrade Caxton, or restore "
            "a backup taken by this version.",
            details={"path": str(path), "version": current, "supported": SCHEMA_VERSION},
        )
    for migration in MIGRATIONS[current:]:
        with sqlite_errors(f"{path}: migration {migration.version} failed"):
            conn._raw_execute("BEGIN IMMEDIATE")
            try:
                migration.apply(conn)
                conn._raw_execute(f"PRAGMA user_version = {migration.version}")
                conn._raw_execute("COMMIT")
            except BaseException:
                conn._raw_execute("ROLLBACK")
                raise
    return current


def database_version(conn: Connection) -> int:
    """The schema version recorded in the database (0 for a new, empty file)."""
    return int(conn.fetch_value("PRAGMA user_version", default=0))


def _check_numbering() -> None:
    for position, migration in enumerate(MIGRATIONS, start=1):
        if migration.version != position:  # pragma: no cover - a programming error
            raise StorageError(f"migration #{position} is numbered {migration.version}")
