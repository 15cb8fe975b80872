"""Each agent's durable key/value store (the ``kv_get``/``kv_set``/``kv_delete`` host imports).

`KvRepository` (``storage.kv``): the runtime reads one key at a time (`get_sync`, behind a small
per-agent cache), counts an agent's usage once for its quota (`usage_sync`), and persists every
change with `set_nowait`/`delete_nowait`: these are applied in the order they were issued and
share commits with everything else being written; the worker waits for the commit, so
``kv_set`` answers OK only for a stored value and reports a write that failed.
`load` (the whole map) is for tools and tests, not for the runtime.
"""

from __future__ import annotations

from concurrent.futures import Future

from caxton.storage._connection import Connection
from caxton.storage._core import StorageCore

__all__ = ["KvRepository"]


def _set(conn: Connection, name: str, key: bytes, value: bytes) -> None:
    conn.execute(
        "INSERT INTO kv(name, key, value) VALUES (?, ?, ?)"
        " ON CONFLICT(name, key) DO UPDATE SET value = excluded.value",
        (name, key, value),
    )


def _delete(conn: Connection, name: str, key: bytes) -> bool:
    return conn.execute("DELETE FROM kv WHERE name = ? AND key = ?", (name, key)) > 0


def _get(conn: Connection, name: str, key: bytes) -> bytes | None:
    value = conn.fetch_value("SELECT value FROM kv WHERE name = ? AND key = ?", (name, key))
    return None if value is None else bytes(value)


def _usage(conn: Connection, name: str) -> tuple[int, int]:
    row = conn.fetch_all(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(key) + LENGTH(value)), 0) FROM kv WHERE name = ?",
        (name,),
    )[0]
    return int(row[0]), int(row[1])


def _load(conn: Connection, name: str) -> dict[bytes, bytes]:
    rows = conn.fetch_all("SELECT key, value FROM kv WHERE name = ?", (name,))
    return {bytes(key): bytes(value) for key, value in rows}


class KvRepository:
    """Per-agent key/value pairs (``storage.kv``); keys and values are bytes."""

    def __init__(self, store: StorageCore) -> None:
        self._store = store

    def load_sync(self, name: str) -> dict[bytes, bytes]:
        """Every pair the agent has stored (empty for an unknown agent)."""
        return self._store.read_sync(lambda c: _load(c, name))

    async def load(self, name: str) -> dict[bytes, bytes]:
        """`load_sync` for the event loop."""
        return await self._store.read(lambda c: _load(c, name))

    def get_sync(self, name: str, key: bytes) -> bytes | None:
        """The committed value of one key, or None (blocks; not on the event loop)."""
        return self._store.read_sync(lambda c: _get(c, name, key))

    def usage_sync(self, name: str) -> tuple[int, int]:
        """(keys, bytes of keys and values) committed for the agent (blocks)."""
        return self._store.read_sync(lambda c: _usage(c, name))

    def set_nowait(self, name: str, key: bytes, value: bytes) -> Future[None]:
        """Store ``key = value`` for the agent without waiting; the future resolves on commit.

        Fails (in the future) with `StorageError` if no agent has that name.
        """
        return self._store.write_nowait(lambda c: _set(c, name, key, value))

    def delete_nowait(self, name: str, key: bytes) -> Future[bool]:
        """Delete ``key`` without waiting; the future says whether it existed."""
        return self._store.write_nowait(lambda c: _delete(c, name, key))

    def clear_nowait(self, name: str) -> Future[int]:
        """Delete every pair of the agent without waiting; the future gives how many."""
        return self._store.write_nowait(
            lambda c: c.execute("DELETE FROM kv WHERE name = ?", (name,))
        )

    async def get(self, name: str, key: bytes) -> bytes | None:
        """The stored value, or None."""
        return await self._store.read(lambda c: _get(c, name, key))
