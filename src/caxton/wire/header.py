"""The envelope fields delivery decides on, read from a stamped message's bytes."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from caxton.errors import InvalidMessage
from caxton.wire.codec import parse_reply_by

__all__ = ["Header", "expired", "header_from", "header_of", "message_id_of"]


class Header(msgspec.Struct):
    """The envelope fields the loop-side router reads (tolerant: wrong types become None)."""

    sender: Any = None
    receiver: Any = None
    message_id: Any = None
    conversation_id: Any = None
    performative: Any = None
    reply_with: Any = None
    reply_by: Any = None


_decode_header = msgspec.json.Decoder(Header).decode


def header_of(data: bytes) -> Header:
    """The header fields of a message; an empty header if it is not a JSON object."""
    try:
        return _decode_header(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return Header()


def header_from(envelope: dict[str, Any]) -> Header:
    """The header of an envelope just encoded (the values `header_of(data)` would decode)."""
    return Header(
        sender=envelope["sender"],
        receiver=envelope["receiver"],
        message_id=envelope["message_id"],
        conversation_id=envelope["conversation_id"],
        performative=envelope["performative"],
        reply_with=envelope.get("reply_with"),
        reply_by=envelope.get("reply_by"),
    )


def expired(header: Header, now: float | None = None) -> bool:
    """Whether the message's ``reply_by`` has passed."""
    if not isinstance(header.reply_by, str):
        return False
    try:
        return parse_reply_by(header.reply_by) <= (time.time() if now is None else now)
    except InvalidMessage:
        return False


_KEY = b'"message_id":"'


def message_id_of(data: bytes) -> str | None:
    """The ``message_id`` of a message stamped by this runtime (it is near the front)."""
    start = data.find(_KEY)
    if start < 0:
        return None
    start += len(_KEY)
    end = data.find(b'"', start)
    return None if end < 0 else data[start:end].decode("utf-8", "replace")
