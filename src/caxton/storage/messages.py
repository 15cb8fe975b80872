"""Messages: conversation history, deliveries not yet handled, and dead letters.

Three tables (migration 2), written by the messaging layer:

* ``conversation_chunks``: the history. One row holds consecutive messages of one conversation
  as a JSON array, so a batch of 4,000 agent-to-agent messages of one conversation costs one
  INSERT instead of 4,000. A conversation is its chunks in id order.
* ``pending_deliveries``: messages queued for a local agent whose handling was not yet known
  to be done when they were written; `recover` delivers these again after a restart and a
  handled mark deletes them (at least once).
* ``dead_letters``: messages that could not be delivered or handled, with the reason.

`MessageBatch` is the unit the messaging journal writes: appended history, new pending rows,
done marks, retractions and outbox rows (messages for other nodes), applied in that order
inside one transaction (one write op).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from caxton.storage._connection import Connection
from caxton.storage._core import StorageCore
from caxton.storage.outbox import OutboxEntry, OutboxRow, enqueue_rows

__all__ = [
    "DeadLetterRecord",
    "MessageBatch",
    "MessagesRepository",
    "PendingRecord",
    "dead_letter_pending",
]


@dataclass(slots=True)
class MessageBatch:
    """What one journal flush (or one accepted API message) writes."""

    #: (conversation_id, number of messages, JSON array of the messages)
    chunks: list[tuple[str, int, bytes]] = field(default_factory=list)
    #: (message_id, receiver, body): deliveries to local agents not handled yet.
    pending: list[tuple[str, str, bytes]] = field(default_factory=list)
    #: (message_id, receiver): deliveries handled (or dead-lettered) since.
    done: list[tuple[str, str]] = field(default_factory=list)
    #: message_ids of messages retracted after an earlier batch wrote them: every pending
    #: delivery of each is deleted (the sender was told the send failed).
    retracted: list[str] = field(default_factory=list)
    #: (message_id, target node, receiver, body): messages for agents on other nodes, put in
    #: the outbox in the same transaction as their history (storage/outbox.py).
    outbox: list[OutboxRow] = field(default_factory=list)
    #: Set by `write_batch`: the outbox rows it added, with their ``seq`` (read them once the
    #: write has committed).
    enqueued: list[OutboxEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PendingRecord:
    """One delivery that may not have been handled."""

    seq: int
    message_id: str
    receiver: str
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetterRecord:
    """One dead letter as stored."""

    id: int
    message_id: str | None
    conversation_id: str | None
    sender: str | None
    receiver: str
    reason: str
    details: dict[str, Any]
    created_at: float
    redriven_at: float | None
    body: bytes


def write_batch(conn: Connection, batch: MessageBatch, now: float | None = None) -> None:
    """Apply ``batch`` (inside the caller's transaction)."""
    at = time.time() if now is None else now
    if batch.chunks:
        conn.executemany(
            "INSERT INTO conversation_chunks(conversation_id, count, created_at, messages)"
            " VALUES (?, ?, ?, ?)",
            [(conv, n, at, blob) for conv, n, blob in batch.chunks],
        )
    if batch.pending:
        conn.executemany(
            "INSERT OR REPLACE INTO pending_deliveries(message_id, receiver, created_at, body)"
            " VALUES (?, ?, ?, ?)",
            [(mid, receiver, at, body) for mid, receiver, body in batch.pending],
        )
    if batch.done:
        conn.executemany(
            "DELETE FROM pending_deliveries WHERE message_id = ? AND receiver = ?", batch.done
        )
    if batch.retracted:
        conn.executemany(
            "DELETE FROM pending_deliveries WHERE message_id = ?",
            [(mid,) for mid in batch.retracted],
        )
    if batch.outbox:
        batch.enqueued = enqueue_rows(conn, batch.outbox, at)


def _conversation(
    conn: Connection, conversation_id: str, offset: int, limit: int
) -> tuple[list[bytes], int, int]:
    rows = conn.fetch_all(
        "SELECT id, count FROM conversation_chunks WHERE conversation_id = ? ORDER BY id",
        (conversation_id,),
    )
    total = sum(count for _, count in rows)
    wanted: list[int] = []
    skip = seen = 0
    for chunk_id, count in rows:
        if seen >= offset + limit:
            break
        if seen + count > offset:
            if not wanted:
                skip = offset - seen
            wanted.append(chunk_id)
        seen += count
    blobs = [
        bytes(
            conn.fetch_value("SELECT messages FROM conversation_chunks WHERE id = ?", (chunk_id,))
        )
        for chunk_id in wanted
    ]
    return blobs, skip, total


def _dead_letter_from_row(row: Sequence[Any]) -> DeadLetterRecord:
    return DeadLetterRecord(
        id=row[0],
        message_id=row[1],
        conversation_id=row[2],
        sender=row[3],
        receiver=row[4],
        reason=row[5],
        details=json.loads(row[6]),
        created_at=row[7],
        redriven_at=row[8],
        body=bytes(row[9]),
    )


_DEAD_COLUMNS = (
    "id, message_id, conversation_id, sender, receiver, reason, details, created_at,"
    " redriven_at, body"
)


def _add_dead_letter(
    conn: Connection, record: DeadLetterRecord, done: tuple[str, str] | None
) -> int:
    if done is not None:
        deleted = conn.execute(
            "DELETE FROM pending_deliveries WHERE message_id = ? AND receiver = ?", done
        )
        if not deleted:  # rare: already dead-lettered by `dead_letter_pending` (a removal)?
            earlier = conn.fetch_value(
                "SELECT id FROM dead_letters WHERE message_id = ? AND receiver = ?"
                " ORDER BY id DESC LIMIT 1",
                done,
            )
            if earlier is not None:
                return int(earlier)
    return conn.insert(
        "INSERT INTO dead_letters(message_id, conversation_id, sender, receiver, reason,"
        " details, created_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.message_id,
            record.conversation_id,
            record.sender,
            record.receiver,
            record.reason,
            json.dumps(record.details, default=str),
            record.created_at,
            record.body,
        ),
    )


def dead_letter_pending(conn: Connection, receiver: str, details: dict[str, Any]) -> int:
    """Move every pending delivery for ``receiver`` to the dead letters (caller's transaction).

    For an agent that is removed: what was accepted for it is not delivered to a later agent
    of the same name, and not dropped either. Reason ``agent_not_running``, with ``details``.
    Returns how many were moved.
    """
    rows = conn.fetch_all(
        "SELECT message_id, body FROM pending_deliveries WHERE receiver = ? ORDER BY seq",
        (receiver,),
    )
    if not rows:
        return 0
    at = time.time()
    text = json.dumps(details)
    letters = []
    for mid, body in rows:
        data = bytes(body)
        try:
            envelope = json.loads(data)
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict):
            envelope = {}
        conversation, sender = envelope.get("conversation_id"), envelope.get("sender")
        letters.append(
            (
                mid,
                conversation if isinstance(conversation, str) else None,
                sender if isinstance(sender, str) else None,
                receiver,
                "agent_not_running",
                text,
                at,
                data,
            )
        )
    conn.executemany(
        "INSERT INTO dead_letters(message_id, conversation_id, sender, receiver, reason,"
        " details, created_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        letters,
    )
    conn.execute("DELETE FROM pending_deliveries WHERE receiver = ?", (receiver,))
    return len(letters)


def _prune(conn: Connection, table: str, keep: int, count_column: str | None) -> int:
    """Delete the oldest rows of ``table`` so that at most ``keep`` messages remain."""
    total_sql = (
        f"SELECT COALESCE(SUM({count_column}), 0) FROM {table}"
        if count_column
        else (f"SELECT COUNT(*) FROM {table}")
    )
    excess = int(conn.fetch_value(total_sql)) - keep
    if excess <= 0:
        return 0
    size = count_column or "1"
    cut = conn.fetch_value(
        f"SELECT id FROM (SELECT id, SUM({size}) OVER (ORDER BY id) AS running FROM {table})"
        " WHERE running >= ? ORDER BY id LIMIT 1",
        (excess,),
    )
    return conn.execute(f"DELETE FROM {table} WHERE id <= ?", (cut,)) if cut is not None else 0


class MessagesRepository:
    """Conversation history, pending deliveries and dead letters (``storage.messages``)."""

    def __init__(self, store: StorageCore) -> None:
        self._store = store

    def write_nowait(self, batch: MessageBatch) -> Future[None]:
        """Queue ``batch`` for the writer; the future resolves once it is committed."""
        return self._store.write_nowait(lambda c: write_batch(c, batch))

    async def write(self, batch: MessageBatch) -> None:
        """Write ``batch`` and wait for the commit."""
        await self._store.write(lambda c: write_batch(c, batch))

    async def conversation(
        self, conversation_id: str, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[bytes], int, int]:
        """The chunks around one page of a conversation: (JSON arrays, skip, total).

        Decoded and concatenated, the arrays start with ``skip`` messages before ``offset``;
        the page is the next ``limit`` messages. ``total`` counts the whole conversation.
        """
        return await self._store.read(lambda c: _conversation(c, conversation_id, offset, limit))

    async def pending(self, *, after: int = 0, limit: int = 1000) -> list[PendingRecord]:
        """Pending deliveries with ``seq > after``, oldest first."""
        rows = await self._store.read(
            lambda c: c.fetch_all(
                "SELECT seq, message_id, receiver, body FROM pending_deliveries"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            )
        )
        return [PendingRecord(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    async def add_dead_letter(
        self, record: DeadLetterRecord, *, done: tuple[str, str] | None = None
    ) -> int:
        """Store a dead letter (``record.id`` is ignored) and return its id.

        ``done`` = (message_id, receiver) also deletes that pending delivery, in the same
        transaction: a dead-lettered message is not delivered again by `recover`. If there is
        no such delivery but a dead letter for it exists (its agent was removed while the
        message failed), nothing is added and that one's id is returned.
        """
        return await self._store.write(lambda c: _add_dead_letter(c, record, done))

    async def dead_letters(
        self, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[DeadLetterRecord], int]:
        """A page of dead letters, oldest first, and how many there are."""

        def page(c: Connection) -> tuple[list[DeadLetterRecord], int]:
            rows = c.fetch_all(
                f"SELECT {_DEAD_COLUMNS} FROM dead_letters ORDER BY id LIMIT ? OFFSET ?",
                (limit, offset),
            )
            total = int(c.fetch_value("SELECT COUNT(*) FROM dead_letters"))
            return [_dead_letter_from_row(r) for r in rows], total

        return await self._store.read(page)

    async def dead_letter(self, dead_letter_id: int) -> DeadLetterRecord | None:
        """One dead letter, or None."""
        row = await self._store.read(
            lambda c: c.fetch_one(
                f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE id = ?", (dead_letter_id,)
            )
        )
        return None if row is None else _dead_letter_from_row(row)

    async def mark_redriven(self, dead_letter_id: int, batch: MessageBatch) -> bool:
        """Mark a dead letter redriven and write ``batch`` (the re-submitted message) together.

        False (and nothing written) if it does not exist or was redriven already.
        """

        def run(c: Connection) -> bool:
            changed = c.execute(
                "UPDATE dead_letters SET redriven_at = ? WHERE id = ? AND redriven_at IS NULL",
                (time.time(), dead_letter_id),
            )
            if changed:
                write_batch(c, batch)
            return changed > 0

        return await self._store.write(run)

    async def prune(
        self, *, max_history: int, max_dead_letters: int, max_history_bytes: int | None = None
    ) -> tuple[int, int]:
        """Drop the oldest history chunks and dead letters beyond the limits (in messages, and
        for the history in bytes of message JSON too)."""

        def run(c: Connection) -> tuple[int, int]:
            chunks = _prune(c, "conversation_chunks", max_history, "count")
            if max_history_bytes is not None:  # length() of a blob reads no content
                chunks += _prune(c, "conversation_chunks", max_history_bytes, "length(messages)")
            return chunks, _prune(c, "dead_letters", max_dead_letters, None)

        return await self._store.write(run)
