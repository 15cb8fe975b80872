"""Timers that must survive a restart: messages an agent scheduled for later (``schedule``).

A timer is a row with the time it is due (unix seconds) and the message body; the scheduler
lists what is due, delivers it and deletes the row, so a crash in between delivers it again
(at least once, like every other message).
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

from caxton.storage._connection import Connection
from caxton.storage._core import StorageCore

__all__ = ["ScheduledRecord", "ScheduledRepository"]


@dataclass(frozen=True, slots=True)
class ScheduledRecord:
    """One pending timer."""

    id: int
    name: str
    due_at: float
    body: bytes


def _add(conn: Connection, name: str, due_at: float, body: bytes) -> int:
    return conn.insert(
        "INSERT INTO scheduled(name, due_at, body) VALUES (?, ?, ?)", (name, due_at, body)
    )


def _delete(conn: Connection, timer_id: int) -> bool:
    return conn.execute("DELETE FROM scheduled WHERE id = ?", (timer_id,)) > 0


def _select(
    conn: Connection, where: str, params: tuple[object, ...], limit: int = -1
) -> list[ScheduledRecord]:
    rows = conn.fetch_all(
        f"SELECT id, name, due_at, body FROM scheduled {where} ORDER BY due_at, id LIMIT ?",
        (*params, limit),
    )
    return [ScheduledRecord(r[0], r[1], r[2], bytes(r[3])) for r in rows]


class ScheduledRepository:
    """Durable timers (``storage.scheduled``)."""

    def __init__(self, store: StorageCore) -> None:
        self._store = store

    def add_nowait(self, name: str, due_at: float, body: bytes) -> Future[int]:
        """Queue a timer without waiting; the future gives its id once committed.

        Fails (in the future) with `StorageError` if no agent has that name.
        """
        return self._store.write_nowait(lambda c: _add(c, name, due_at, body))

    async def add(self, name: str, due_at: float, body: bytes) -> int:
        """Store a timer for agent ``name`` due at ``due_at`` (unix seconds); return its id."""
        return await self._store.write(lambda c: _add(c, name, due_at, body))

    async def delete(self, timer_id: int) -> bool:
        """Delete a timer (delivered or cancelled); return whether it existed."""
        return await self._store.write(lambda c: _delete(c, timer_id))

    def delete_nowait(self, timer_id: int) -> Future[bool]:
        """`delete` without waiting."""
        return self._store.write_nowait(lambda c: _delete(c, timer_id))

    async def list_due(self, now: float, *, limit: int = 1000) -> list[ScheduledRecord]:
        """Timers with ``due_at <= now``, earliest first, at most ``limit``."""
        return await self._store.read(lambda c: _select(c, "WHERE due_at <= ?", (now,), limit))

    async def list_all(self, name: str | None = None) -> list[ScheduledRecord]:
        """Every pending timer (of one agent if ``name`` is given), earliest first."""
        if name is None:
            return await self._store.read(lambda c: _select(c, "", ()))
        return await self._store.read(lambda c: _select(c, "WHERE name = ?", (name,)))

    async def next_due_at(self) -> float | None:
        """When the earliest timer is due, or None if there is none (for the scheduler's sleep)."""
        value = await self._store.read(lambda c: c.fetch_value("SELECT MIN(due_at) FROM scheduled"))
        return None if value is None else float(value)
