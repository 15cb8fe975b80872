"""An agent's recent messages (from it or to it), read back from the conversation history.

What ``caxton debug`` shows: the history already keeps every message a node accepted or an
agent sent (up to ``max_history`` messages), so the answer is complete from the first call,
including what happened before anyone asked. The history has no per-agent index, so a call
looks at the newest `SCAN` messages at most (newest first, stopping once it has enough) and
says whether that reached the start of the history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from caxton.storage.history import history_page
from caxton.wire.codec import decode_array

if TYPE_CHECKING:
    from caxton.messaging.facade import Messaging
    from caxton.storage import Connection

__all__ = ["SCAN", "RecentMessages", "recent_messages"]

#: Messages of the history looked at, at most, per call (newest first).
SCAN = 50_000


@dataclass(frozen=True, slots=True)
class RecentMessages:
    """The agent's latest messages, oldest first, and how much history was looked at."""

    messages: list[dict[str, Any]]
    scanned: int  # messages of the history looked at
    complete: bool  # True: the whole history was looked at (nothing older exists)


def _involves(message: dict[str, Any], name: str) -> bool:
    if message.get("sender") == name:
        return True
    receiver = message.get("receiver")
    return receiver == name or (isinstance(receiver, list) and name in receiver)


def _scan(conn: Connection, name: str, limit: int, budget: int) -> RecentMessages:
    needle = json.dumps(name).encode()
    newest_first: list[dict[str, Any]] = []
    scanned, before = 0, None
    while len(newest_first) < limit and scanned < budget:
        page = history_page(conn, needle, before=before)
        if not page:
            return RecentMessages(newest_first[:limit][::-1], scanned, True)
        for row_id, count, blob in page:
            scanned += count
            before = row_id
            if blob is not None:
                mine = [m for m in decode_array(blob) if _involves(m, name)]
                newest_first.extend(reversed(mine))
            if len(newest_first) >= limit or scanned >= budget:
                break
    return RecentMessages(newest_first[:limit][::-1], scanned, False)


async def recent_messages(
    messaging: Messaging, name: str, limit: int, *, budget: int = SCAN
) -> RecentMessages:
    """The last ``limit`` messages from or to ``name`` in the history (read off the loop)."""
    await messaging.history.written()  # every message recorded so far is committed now
    if limit <= 0:
        return RecentMessages([], 0, False)
    return await messaging.storage.read(lambda c: _scan(c, name, limit, budget))
