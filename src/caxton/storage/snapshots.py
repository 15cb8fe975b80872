"""Snapshots of an agent's linear memory, so a reactor agent can resume where it stopped.

The memory is compressed with zlib at level 1 before it reaches the writer thread (the caller's
thread pays for it, not the commit of everyone else): linear memory is mostly zero pages, and
level 1 shrinks those about a thousandfold at several hundred MB/s.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from typing import Any

from caxton.errors import StorageError
from caxton.storage._connection import Connection
from caxton.storage._core import StorageCore

__all__ = ["SnapshotsRepository"]

#: zlib level: 1 is several times faster than the default and nearly as good on memory images.
COMPRESSION_LEVEL = 1


def _save(conn: Connection, name: str, packed: bytes, meta: str, taken_at: float) -> None:
    conn.execute(
        "INSERT INTO snapshots(name, memory, meta, taken_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(name) DO UPDATE SET memory = excluded.memory, meta = excluded.meta,"
        " taken_at = excluded.taken_at",
        (name, packed, meta, taken_at),
    )


def _load(conn: Connection, name: str) -> tuple[bytes, str] | None:
    row = conn.fetch_one("SELECT memory, meta FROM snapshots WHERE name = ?", (name,))
    return None if row is None else (bytes(row[0]), str(row[1]))


def _delete(conn: Connection, name: str) -> bool:
    return conn.execute("DELETE FROM snapshots WHERE name = ?", (name,)) > 0


def _unpack(name: str, found: tuple[bytes, str] | None) -> tuple[bytes, dict[str, Any]] | None:
    if found is None:
        return None
    packed, meta = found
    try:
        memory = zlib.decompress(packed)
    except zlib.error as exc:
        raise StorageError(f"the memory snapshot of {name!r} is corrupt: {exc}") from exc
    decoded: dict[str, Any] = json.loads(meta)
    return memory, decoded


class SnapshotsRepository(StorageCore):
    """One memory snapshot per agent (mixed into `Storage`); saving replaces the previous one."""

    def save_snapshot_sync(self, name: str, memory: bytes, meta: dict[str, Any]) -> None:
        """Compress and store ``memory`` with ``meta`` (JSON); blocks until committed.

        Raises `StorageError` if no agent has that name.
        """
        packed = zlib.compress(memory, COMPRESSION_LEVEL)
        text = json.dumps(meta, sort_keys=True)
        now = time.time()
        self.write_sync(lambda c: _save(c, name, packed, text, now))

    async def save_snapshot(self, name: str, memory: bytes, meta: dict[str, Any]) -> None:
        """`save_snapshot_sync` for the event loop (compression runs in a worker thread)."""
        packed = await asyncio.to_thread(zlib.compress, memory, COMPRESSION_LEVEL)
        text = json.dumps(meta, sort_keys=True)
        now = time.time()
        await self.write(lambda c: _save(c, name, packed, text, now))

    def load_snapshot_sync(self, name: str) -> tuple[bytes, dict[str, Any]] | None:
        """``(memory, meta)`` of the agent's snapshot, or None if it has none."""
        return _unpack(name, self.read_sync(lambda c: _load(c, name)))

    async def load_snapshot(self, name: str) -> tuple[bytes, dict[str, Any]] | None:
        """`load_snapshot_sync` for the event loop."""
        found = await self.read(lambda c: _load(c, name))
        return await asyncio.to_thread(_unpack, name, found)

    def delete_snapshot_sync(self, name: str) -> bool:
        """Delete the agent's snapshot; return whether there was one."""
        return self.write_sync(lambda c: _delete(c, name))

    async def delete_snapshot(self, name: str) -> bool:
        """`delete_snapshot_sync` for the event loop."""
        return await self.write(lambda c: _delete(c, name))
