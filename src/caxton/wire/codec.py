"""The FIPA-ACL envelope (docs/messaging.md, "The message"): validation, normalisation, encoding.

`parse_message` is the gate for messages that enter from outside the runtime (the API, the
dead-letter redrive, recovery): it returns a plain dict with every field checked, or raises
`InvalidMessage` naming the field (`MessageTooLarge` for size). Nothing else escapes it,
whatever JSON it is given (a property test holds it to that).

Rules, field by field:

* ``performative``: required; one of the 22 FIPA performatives. Input may use the FIPA hyphen
  spelling and any case (``Accept-Proposal``); the result is lowercase with ``_``.
* ``receiver``: required; a name or a non-empty list of distinct names (`NAME`).
* ``sender``: a name, when present (the API replaces it with the client's name anyway).
* ``conversation_id``, ``reply_with``, ``in_reply_to``, ``protocol``, ``ontology``,
  ``language``: strings (1 to 256 characters) when present; ``null`` is the same as absent.
* ``reply_by``: an RFC 3339 timestamp with a time zone (``2026-01-01T12:00:00Z``).
* ``content``: any JSON value.
* ``message_id`` and ``created_at`` are the runtime's: values given by a client are replaced.
* Unknown fields are kept as they are (FIPA allows user-defined parameters).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, get_args

import msgspec

from caxton.errors import InvalidMessage, MessageTooLarge

__all__ = [
    "ASKS_FOR_REPLY",
    "NAME",
    "PERFORMATIVES",
    "Performative",
    "check_name",
    "check_size",
    "decode",
    "decode_array",
    "encode",
    "normalise_performative",
    "parse_message",
    "parse_reply_by",
]

#: The 22 FIPA communicative acts, in the spelling Caxton uses.
Performative = Literal[
    "accept_proposal",
    "agree",
    "cancel",
    "cfp",
    "confirm",
    "disconfirm",
    "failure",
    "inform",
    "inform_if",
    "inform_ref",
    "not_understood",
    "propagate",
    "propose",
    "proxy",
    "query_if",
    "query_ref",
    "refuse",
    "reject_proposal",
    "request",
    "request_when",
    "request_whenever",
    "subscribe",
]
PERFORMATIVES: frozenset[str] = frozenset(get_args(Performative))
#: Performatives whose sender expects an answer even without ``reply_with``.
ASKS_FOR_REPLY = frozenset({"request", "query_if", "query_ref", "cfp"})
#: A receiver or sender name: agents follow ``^[a-z][a-z0-9-]{0,62}$``; API clients may also
#: use upper case, digits first, ``_``, ``.``, ``:`` and ``@`` (up to 128 characters).
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}$")
_TEXT_FIELDS = ("conversation_id", "reply_with", "in_reply_to", "protocol", "ontology", "language")
_MAX_TEXT = 256
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)

#: What `parse_message` takes as encoded JSON (a tuple: ``isinstance`` with ``a | b | c``
#: would build the union object again on every call).
_BUFFERS = (bytes, bytearray, memoryview)

_decode_object = msgspec.json.Decoder(dict[str, Any]).decode
encode = msgspec.json.Encoder().encode


def decode(data: bytes | memoryview) -> dict[str, Any]:
    """Decode a JSON object; `InvalidMessage` if ``data`` is not one."""
    try:
        return _decode_object(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidMessage(f"the message is not a JSON object: {exc}") from None


_decode_array = msgspec.json.Decoder(list[dict[str, Any]]).decode


def decode_array(data: bytes) -> list[dict[str, Any]]:
    """Decode a stored JSON array of messages."""
    return _decode_array(data)


def normalise_performative(value: object) -> str | None:
    """The canonical spelling of a performative, or None if ``value`` is not one."""
    if not isinstance(value, str):
        return None
    if value in PERFORMATIVES:
        return value
    spelled = value.strip().lower().replace("-", "_")
    return spelled if spelled in PERFORMATIVES else None


def parse_reply_by(value: str) -> float:
    """Unix seconds of an RFC 3339 timestamp; `InvalidMessage` if it is not one."""
    if not _RFC3339.fullmatch(value):
        raise InvalidMessage(
            "reply_by must be an RFC 3339 timestamp such as 2026-01-01T12:00:00Z",
            details={"field": "reply_by"},
        )
    text = value.replace("z", "Z").replace("t", "T").replace(" ", "T")
    text = text[:-1] + "+00:00" if text.endswith("Z") else text
    head, _, rest = text.partition(".")
    if rest:  # fromisoformat (3.11) takes at most 6 fractional digits
        digits = re.match(r"[0-9]+", rest)
        assert digits is not None
        text = f"{head}.{digits.group()[:6].ljust(6, '0')}{rest[digits.end() :]}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError):
        raise InvalidMessage(
            f"reply_by is not a valid date and time: {value!r}", details={"field": "reply_by"}
        ) from None


def _invalid(field: str, message: str) -> InvalidMessage:
    return InvalidMessage(f"{field}: {message}", details={"field": field})


#: Strings known to match `NAME` (a cache: bulk sends name the same receivers and senders over
#: and over, and a set lookup costs a fraction of the regex). Safe because only strings that
#: matched the constant `NAME` are ever added, so membership implies a match; it is cleared
#: when it reaches `_MAX_KNOWN_NAMES` (bounded memory), and a race between threads can only
#: cost a miss, which runs the regex as before.
_known_names: set[str] = set()
_MAX_KNOWN_NAMES = 4096


def _name(field: str, value: object) -> str:
    # The type test first: a list or dict value must not reach the set (unhashable), and only
    # exact strs are looked up (nothing else can equal a cached name).
    if type(value) is str and value in _known_names:
        return value
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise _invalid(field, f"expected a name matching {NAME.pattern}, got {value!r:.80}")
    if len(_known_names) >= _MAX_KNOWN_NAMES:
        _known_names.clear()
    _known_names.add(value)
    return value


def check_name(field: str, value: object) -> str:
    """``value`` if it is a valid name (`NAME`); else `InvalidMessage` naming ``field``."""
    return _name(field, value)


def check_size(data: bytes | bytearray | memoryview, max_size: int) -> None:
    """`MessageTooLarge` if the encoded message ``data`` is above ``max_size`` bytes."""
    if len(data) > max_size:
        raise MessageTooLarge(
            f"the message is {len(data)} bytes; the limit is {max_size}",
            details={"size": len(data), "limit": max_size},
        )


def parse_message(message: Mapping[str, Any] | bytes, *, max_size: int) -> dict[str, Any]:
    """Validate and normalise one message (see the module docstring); return a new dict.

    Raises `MessageTooLarge` if the encoded message is above ``max_size`` bytes, and
    `InvalidMessage` (with ``details["field"]``) for anything else that is wrong.
    """
    if isinstance(message, _BUFFERS):
        check_size(message, max_size)
        body = decode(message)
    elif isinstance(message, Mapping):
        body = dict(message)
        if not all(isinstance(key, str) for key in body):
            raise InvalidMessage("message field names must be strings")
    else:
        raise InvalidMessage(f"a message is a JSON object, not {type(message).__name__}")
    if "performative" not in body:
        raise _invalid("performative", "required")
    performative = normalise_performative(body["performative"])
    if performative is None:
        raise _invalid(
            "performative",
            f"unknown performative {body['performative']!r:.60}; expected one of "
            + ", ".join(sorted(PERFORMATIVES)),
        )
    body["performative"] = performative
    receiver = body.get("receiver")
    if receiver is None:
        raise _invalid("receiver", "required")
    if isinstance(receiver, list):
        if not receiver:
            raise _invalid("receiver", "an empty list")
        names = [_name("receiver", one) for one in receiver]
        if len(set(names)) != len(names):
            raise _invalid("receiver", "lists a name twice")
    else:
        _name("receiver", receiver)
    if body.get("sender") is not None:
        _name("sender", body["sender"])
    # Most messages carry none of the optional text fields: one C-level set test skips the
    # loop then (it would only have found every field absent).
    for field in () if body.keys().isdisjoint(_TEXT_FIELDS) else _TEXT_FIELDS:
        value = body.get(field)
        if value is None:
            body.pop(field, None)
        elif not isinstance(value, str) or not 0 < len(value) <= _MAX_TEXT:
            raise _invalid(field, f"expected a string of 1 to {_MAX_TEXT} characters")
    reply_by = body.get("reply_by")
    if reply_by is None:
        body.pop("reply_by", None)
    elif not isinstance(reply_by, str):
        raise _invalid("reply_by", "expected an RFC 3339 timestamp string")
    else:
        parse_reply_by(reply_by)
    if not isinstance(message, _BUFFERS):
        try:
            size = len(encode(body))
        except (TypeError, ValueError, OverflowError) as exc:
            raise _invalid("content", f"not encodable as JSON: {exc}") from None
        if size > max_size:
            raise MessageTooLarge(
                f"the message is {size} bytes; the limit is {max_size}",
                details={"size": size, "limit": max_size},
            )
    return body
