"""Cross-node messages: the sender's outbox and the receiver's record of ids already taken.

Two tables (migration 3):

* ``outbox``: messages accepted on this node for an agent on another node, kept until that node
  has committed them and acknowledged. ``seq`` (never reused) is the insertion order; a receiver's
  entries are sent in ``seq`` order, and `due` never returns an entry while an earlier entry for
  the same receiver waits for a later retry (head-of-line per receiver).
* ``received_messages``: the (message_id, receiver) pairs this node has committed from other
  nodes, so that a retried message is dropped instead of delivered twice. Pruned by age and
  count (`prune_received`): a duplicate older than the window would be delivered again.

Both sides can join a `MessageBatch` transaction: a batch's ``outbox`` rows are enqueued by
`caxton.storage.messages.write_batch` with the history, and `OutboxRepository.accept` records
received ids and writes the batch for the new ones in one write op.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from caxton.storage._connection import Connection, Row
from caxton.storage._core import StorageCore

if TYPE_CHECKING:
    from caxton.storage.messages import MessageBatch

__all__ = [
    "RECEIVED_MAX_AGE",
    "RECEIVED_MAX_ROWS",
    "OutboxEntry",
    "OutboxRepository",
    "OutboxRow",
    "enqueue_rows",
    "seen_or_record_in",
]

#: (message_id, target node, receiver, body): one message to put in the outbox.
OutboxRow = tuple[str, str, str, bytes]
#: (message_id, receiver): what identifies one delivery (a message to several receivers has
#: one message_id and one delivery per receiver).
DeliveryKey = tuple[str, str]

#: Received ids older than this (seconds) are forgotten by `OutboxRepository.prune_received`.
RECEIVED_MAX_AGE = 7 * 24 * 3600.0
#: At most this many received ids are kept (the newest).
RECEIVED_MAX_ROWS = 1_000_000


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One message waiting for the owning node's acknowledgement."""

    seq: int
    message_id: str
    node: str
    receiver: str
    body: bytes
    enqueued_at: float
    attempts: int
    next_attempt_at: float
    #: Committed by this process and never sent yet (so the owner cannot have it already);
    #: False for rows read from the store.
    fresh: bool = False


_COLUMNS = "seq, message_id, node, receiver, body, enqueued_at, attempts, next_attempt_at"


def _entry(row: Row) -> OutboxEntry:
    seq, mid, node, receiver, body, enqueued, attempts, next_at = row
    return OutboxEntry(
        int(seq),
        str(mid),
        str(node),
        str(receiver),
        bytes(body),
        float(enqueued),
        int(attempts),
        float(next_at),
    )


def enqueue_rows(conn: Connection, rows: Iterable[OutboxRow], now: float) -> list[OutboxEntry]:
    """Put ``rows`` in the outbox, due at once (inside the caller's transaction).

    A (message_id, receiver) already in the outbox is left where it is (a recovery that
    enqueues again keeps the first position). Returns the rows added, with their ``seq``.
    """
    rows = list(rows)
    last = conn.fetch_value("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'", default=0)
    added = conn.executemany(
        "INSERT OR IGNORE INTO outbox(message_id, node, receiver, body, enqueued_at,"
        " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)",
        [(mid, node, receiver, body, now, now) for mid, node, receiver, body in rows],
    )
    if added == len(rows):  # the usual case: the new rows took the next seq values in order
        return [
            OutboxEntry(last + i, mid, node, receiver, body, now, 0, now, True)
            for i, (mid, node, receiver, body) in enumerate(rows, start=1)
        ]
    return [  # some were there already: read back which ones are new
        replace(_entry(row), fresh=True)
        for row in conn.fetch_all(
            f"SELECT {_COLUMNS} FROM outbox WHERE seq > ? ORDER BY seq", (last,)
        )
    ]


def seen_or_record_in(
    conn: Connection, keys: Iterable[DeliveryKey], now: float
) -> frozenset[DeliveryKey]:
    """Record the new deliveries of ``keys``; return those seen before (caller's transaction).

    A key twice in ``keys`` is new the first time and a duplicate the second.
    """
    duplicates: set[DeliveryKey] = set()
    for key in keys:
        added = conn.execute(
            "INSERT OR IGNORE INTO received_messages(message_id, receiver, received_at)"
            " VALUES (?, ?, ?)",
            (key[0], key[1], now),
        )
        if not added:
            duplicates.add(key)
    return frozenset(duplicates)


def _due(conn: Connection, now: float, limit: int) -> list[OutboxEntry]:
    # A receiver's entries are due up to (not including) its first entry that is not due yet.
    rows = conn.fetch_all(
        "WITH blocked AS (SELECT receiver, MIN(seq) AS first FROM outbox"
        " WHERE next_attempt_at > ? GROUP BY receiver)"
        f" SELECT {', '.join('o.' + c for c in _COLUMNS.split(', '))} FROM outbox o"
        " LEFT JOIN blocked b ON b.receiver = o.receiver"
        " WHERE o.next_attempt_at <= ? AND (b.first IS NULL OR o.seq < b.first)"
        " ORDER BY o.seq LIMIT ?",
        (now, now, limit),
    )
    return [_entry(r) for r in rows]


def _prune_received(conn: Connection, now: float, max_age: float, max_rows: int) -> int:
    deleted = conn.execute("DELETE FROM received_messages WHERE received_at < ?", (now - max_age,))
    cut = conn.fetch_value(
        "SELECT received_at FROM received_messages ORDER BY received_at DESC LIMIT 1 OFFSET ?",
        (max_rows,),
    )
    if cut is not None:
        deleted += conn.execute("DELETE FROM received_messages WHERE received_at <= ?", (cut,))
    return deleted


class OutboxRepository:
    """The outbox and the received ids (``storage.outbox``)."""

    def __init__(self, store: StorageCore) -> None:
        self._store = store

    # --- the sending node -------------------------------------------------------------------

    def enqueue_nowait(
        self, rows: Sequence[OutboxRow], now: float | None = None
    ) -> Future[list[OutboxEntry]]:
        """Queue ``rows`` for the writer (one transaction); the future gives the new entries.

        To enqueue together with a message's history, put the rows in `MessageBatch.outbox`.
        """
        at = time.time() if now is None else now
        return self._store.write_nowait(lambda c: enqueue_rows(c, rows, at))

    async def enqueue(
        self, rows: Sequence[OutboxRow], now: float | None = None
    ) -> list[OutboxEntry]:
        """`enqueue_nowait` and wait for the commit; the new entries."""
        return await asyncio.wrap_future(self.enqueue_nowait(rows, now))

    async def due(self, now: float, limit: int = 1000) -> list[OutboxEntry]:
        """Entries with ``next_attempt_at <= now`` in insertion order, at most ``limit``; a
        receiver's entries stop at its first entry that is not due yet."""
        return await self._store.read(lambda c: _due(c, now, limit))

    async def entries(self, limit: int = -1) -> list[OutboxEntry]:
        """Every entry (the first ``limit`` if given), in insertion order."""
        rows = await self._store.read(
            lambda c: c.fetch_all(f"SELECT {_COLUMNS} FROM outbox ORDER BY seq LIMIT ?", (limit,))
        )
        return [_entry(r) for r in rows]

    async def ack(self, seqs: Iterable[int]) -> int:
        """Delete the acknowledged entries; return how many existed."""
        params = [(seq,) for seq in seqs]
        return await self._store.write(
            lambda c: c.executemany("DELETE FROM outbox WHERE seq = ?", params)
        )

    async def reschedule(self, seqs: Iterable[int], next_at: float, attempts: int) -> int:
        """Set when the entries are next due and how many attempts they have had."""
        params = [(next_at, attempts, seq) for seq in seqs]
        return await self._store.write(
            lambda c: c.executemany(
                "UPDATE outbox SET next_attempt_at = ?, attempts = ? WHERE seq = ?", params
            )
        )

    async def depth(self, node: str | None = None) -> int:
        """How many entries wait (for one target node if given)."""
        sql, params = "SELECT COUNT(*) FROM outbox WHERE ? IS NULL OR node = ?", (node, node)
        return int(await self._store.read(lambda c: c.fetch_value(sql, params)))

    async def oldest_age(self, now: float) -> float:
        """Seconds since the oldest waiting entry was enqueued (0 when the outbox is empty)."""
        oldest = await self._store.read(
            lambda c: c.fetch_value("SELECT MIN(enqueued_at) FROM outbox")
        )
        return 0.0 if oldest is None else max(0.0, now - float(oldest))

    # --- the receiving node -----------------------------------------------------------------

    async def seen_or_record(
        self, keys: Sequence[DeliveryKey], now: float | None = None
    ) -> frozenset[DeliveryKey]:
        """Record the new (message_id, receiver) pairs in one write; return the duplicates."""
        at = time.time() if now is None else now
        return await self._store.write(lambda c: seen_or_record_in(c, keys, at))

    async def accept(
        self,
        keys: Sequence[DeliveryKey],
        build: Callable[[frozenset[DeliveryKey]], MessageBatch],
        now: float | None = None,
    ) -> frozenset[DeliveryKey]:
        """Record ``keys`` and write ``build(duplicates)`` (the batch of the new ones) in ONE
        transaction, so an id is recorded exactly when its message is committed; return the
        duplicates. ``build`` runs on the writer thread: keep it short and pure."""
        at = time.time() if now is None else now
        return await asyncio.wrap_future(self.accept_nowait(keys, build, at))

    def accept_nowait(
        self,
        keys: Sequence[DeliveryKey],
        build: Callable[[frozenset[DeliveryKey]], MessageBatch],
        now: float,
    ) -> Future[frozenset[DeliveryKey]]:
        """`accept`, queued for the writer; the future gives the duplicates once committed."""
        from caxton.storage.messages import write_batch

        def run(c: Connection) -> frozenset[DeliveryKey]:
            duplicates = seen_or_record_in(c, keys, now)
            write_batch(c, build(duplicates), now)
            return duplicates

        return self._store.write_nowait(run)

    async def prune_received(
        self,
        now: float | None = None,
        *,
        max_age: float = RECEIVED_MAX_AGE,
        max_rows: int = RECEIVED_MAX_ROWS,
    ) -> int:
        """Forget received ids older than ``max_age`` and all but the newest ``max_rows``."""
        at = time.time() if now is None else now
        return await self._store.write(lambda c: _prune_received(c, at, max_age, max_rows))

    async def received_count(self) -> int:
        """How many received ids are remembered."""
        value = await self._store.read(
            lambda c: c.fetch_value("SELECT COUNT(*) FROM received_messages")
        )
        return int(value)
