"""Dead letters: messages that could not be delivered or handled, kept with the reason.

Reasons (`REASONS`): ``unknown_receiver`` (no agent and no known client has that name),
``agent_not_running`` (the agent is stopped or failed), ``expired`` (its ``reply_by`` passed
before delivery), ``handler_failed`` (the handler trapped, timed out or returned non-zero; the
`AgentFailure` cause and message are in ``details``), ``mailbox_full`` (the receiver's mailbox
stayed full past the wait).

A sender that asked for a reply (``reply_with`` set, or performative ``request``,
``query_if``, ``query_ref`` or ``cfp``) is sent a ``failure`` message in the same conversation,
from the name it addressed, with content ``{"reason", "message_id"}`` and ``in_reply_to`` =
its ``reply_with``: no conversation hangs silently. A ``failure`` never causes another one.
`failure_reply` writes it; the routing rule (`routing.Router.dead_letter`) sends it.

`DeadLetters` keeps them: it stores a dead letter (marking its pending delivery done), counts
it by reason, publishes it on the event bus, and reads them back for the API.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from caxton.messaging.bus import EventBus
from caxton.storage.messages import DeadLetterRecord, MessagesRepository
from caxton.wire.codec import ASKS_FOR_REPLY, encode
from caxton.wire.envelope import new_id, now_rfc3339
from caxton.wire.header import Header, message_id_of

__all__ = [
    "REASONS",
    "DeadLetter",
    "DeadLetterRate",
    "DeadLetters",
    "Reason",
    "failure_reply",
    "from_record",
]

_log = logging.getLogger("caxton.messaging")


class Reason(enum.StrEnum):
    """Why a message was dead-lettered (the values are the API's and the metrics' labels)."""

    UNKNOWN_RECEIVER = "unknown_receiver"
    AGENT_NOT_RUNNING = "agent_not_running"
    EXPIRED = "expired"
    HANDLER_FAILED = "handler_failed"
    MAILBOX_FULL = "mailbox_full"


#: Every reason, as plain strings.
REASONS = tuple(reason.value for reason in Reason)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """One dead letter as the API shows it."""

    id: int
    reason: str
    receiver: str
    message_id: str | None
    conversation_id: str | None
    sender: str | None
    details: dict[str, Any]
    created_at: float  # unix seconds
    redriven_at: float | None
    message: dict[str, Any] | None  # None if the stored bytes are not a JSON object


def from_record(record: DeadLetterRecord) -> DeadLetter:
    """The API view of a stored dead letter."""
    try:
        message: dict[str, Any] | None = msgspec.json.decode(record.body)
    except msgspec.DecodeError:
        message = None
    return DeadLetter(
        id=record.id,
        reason=record.reason,
        receiver=record.receiver,
        message_id=record.message_id,
        conversation_id=record.conversation_id,
        sender=record.sender,
        details=record.details,
        created_at=record.created_at,
        redriven_at=record.redriven_at,
        message=message if isinstance(message, dict) else None,
    )


def record_for(
    receiver: str, data: bytes, header: Header, reason: str, details: dict[str, Any]
) -> DeadLetterRecord:
    """The row to store for a dead letter."""
    return DeadLetterRecord(
        id=0,
        message_id=_text(header.message_id),
        conversation_id=_text(header.conversation_id),
        sender=_text(header.sender),
        receiver=receiver,
        reason=reason,
        details=details,
        created_at=time.time(),
        redriven_at=None,
        body=data,
    )


def failure_reply(receiver: str, header: Header, reason: str) -> tuple[str, str, bytes] | None:
    """(to, conversation, bytes) of the ``failure`` owed to the sender, or None if none is."""
    sender = _text(header.sender)
    if sender is None or header.performative == "failure":
        return None
    if header.reply_with is None and header.performative not in ASKS_FOR_REPLY:
        return None
    conversation = _text(header.conversation_id) or new_id()
    reply: dict[str, Any] = {
        "sender": receiver,
        "message_id": new_id(),
        "created_at": now_rfc3339(),
        "receiver": sender,
        "performative": "failure",
        "conversation_id": conversation,
        "content": {"reason": reason, "message_id": _text(header.message_id)},
    }
    if isinstance(header.reply_with, str):
        reply["in_reply_to"] = header.reply_with
    return sender, conversation, encode(reply)


class DeadLetters:
    """The stored dead letters: written, counted by reason, published, read back (loop thread)."""

    def __init__(self, messages: MessagesRepository, bus: EventBus) -> None:
        self._messages = messages
        self._bus = bus
        #: Dead letters stored since start, by reason (every reason present).
        self.counts = dict.fromkeys(REASONS, 0)
        #: The oldest dead letters deleted beyond ``max_dead_letters`` (see `History.prune`).
        self.expired = 0

    async def store(
        self,
        receiver: str,
        data: bytes,
        header: Header,
        reason: Reason,
        details: dict[str, Any] | None = None,
        *,
        pending: bool,
    ) -> int:
        """Store one dead letter and publish it; its id. ``pending``: the delivery has a
        pending row, marked done in the same write."""
        reason = Reason(reason)
        record = record_for(receiver, data, header, reason.value, details or {})
        mid = message_id_of(data) if pending else None
        done = (mid, receiver) if mid is not None else None
        dead_id = await self._messages.add_dead_letter(record, done=done)
        self.counts[reason.value] = self.counts.get(reason.value, 0) + 1
        self._bus.publish(
            {
                "type": "dead_letter",
                "id": dead_id,
                "reason": reason.value,
                "receiver": receiver,
                "sender": record.sender,
                "message_id": record.message_id,
                "conversation_id": record.conversation_id,
            }
        )
        return dead_id

    async def page(self, *, offset: int = 0, limit: int = 100) -> tuple[list[DeadLetter], int]:
        """A page of dead letters (oldest first) and the total."""
        records, total = await self._messages.dead_letters(offset=offset, limit=limit)
        return [from_record(r) for r in records], total

    async def find(self, dead_letter_id: int) -> DeadLetterRecord | None:
        """One stored dead letter, or None."""
        return await self._messages.dead_letter(dead_letter_id)

    def total(self) -> int:
        """Dead letters stored since start."""
        return sum(self.counts.values())


class DeadLetterRate:
    """The node's rate of dead letters of agents' sends (``max_dead_letters_per_second``).

    Beyond it they are counted in `dropped` by reason, not stored, and summarised in one
    warning a second.
    """

    def __init__(self, per_second: int) -> None:
        self._per_second = per_second
        self._credit = 0
        self._window = float("-inf")
        self._dropped_in_window = 0
        #: Dead letters not stored (over the rate), by reason.
        self.dropped: dict[str, int] = {}

    def allow(self, reason: Reason) -> bool:
        """Take one from the rate; count it in `dropped` if over."""
        if self._credit > 0:
            self._credit -= 1
            return True
        now = time.monotonic()
        if now - self._window >= 1.0:
            if self._dropped_in_window:
                _log.warning(
                    "dead letters over runtime.max_dead_letters_per_second (%d):"
                    " %d not stored in the last window",
                    self._per_second,
                    self._dropped_in_window,
                )
            self._window, self._dropped_in_window = now, 0
            self._credit = self._per_second - 1
            return True
        self._dropped_in_window += 1
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return False
