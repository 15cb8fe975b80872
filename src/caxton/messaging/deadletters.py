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
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from caxton.storage.messages import DeadLetterRecord
from caxton.wire.codec import ASKS_FOR_REPLY, encode
from caxton.wire.envelope import new_id, now_rfc3339
from caxton.wire.header import Header

__all__ = ["REASONS", "DeadLetter", "Reason", "failure_reply", "from_record"]


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
