"""Reading the conversation history newest first, for "what did this agent see lately".

`history_page` is a plain function on a `Connection` (run it through ``Storage.read``): the
history has no per-agent index (one row holds a batch of one conversation's messages), so a
reader walks it backwards in pages and looks at the rows that mention the name.
"""

from __future__ import annotations

from caxton.storage._connection import Connection

__all__ = ["HistoryRow", "history_page"]

#: (row id, number of messages in the row, the row's JSON array if it contains the needle)
HistoryRow = tuple[int, int, bytes | None]

_NEWEST = 1 << 62


def history_page(
    conn: Connection, needle: bytes, *, before: int | None = None, rows: int = 256
) -> list[HistoryRow]:
    """Up to ``rows`` history rows older than row id ``before`` (None: the newest), newest first.

    A row's messages are returned only when its bytes contain ``needle`` (SQLite compares
    them, so rows of other agents cost no copy); the caller decodes and filters those.
    """
    found = conn.fetch_all(
        "SELECT id, count, CASE WHEN instr(messages, ?) > 0 THEN messages END"
        " FROM conversation_chunks WHERE id < ? ORDER BY id DESC LIMIT ?",
        (needle, _NEWEST if before is None else before, rows),
    )
    return [(r[0], r[1], None if r[2] is None else bytes(r[2])) for r in found]
