"""The messages API: send (optionally waiting for the reply), conversations, dead letters.

Handlers are thin: parse the query, call one `Messaging` method, serialise with msgspec. The
message body goes to `Messaging.submit` as the raw bytes it came in (the core validates it and
raises `InvalidMessage` naming the field, `MessageTooLarge` or `WouldBlock`).

Choices documented in docs/api.md:

* ``?wait=DURATION`` is clamped to ``request_timeout`` minus `WAIT_MARGIN`; no reply in time
  answers **504** with code ``UNAVAILABLE`` and the ids in ``details`` (the message *was* accepted).
* A conversation with no stored messages (never existed, or pruned) is **404** ``NOT_FOUND``.
* Redriving an unknown dead letter is 404 ``NOT_FOUND``; one redriven already is 400.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import msgspec
from aiohttp import web

from caxton.api.agent_forms import ascii_digits, query_int
from caxton.api.agent_schemas import MAX_PAGE
from caxton.api.errors import ApiError
from caxton.api.json_body import MAX_JSON_DEPTH, check_depth
from caxton.api.keys import NODE, REQUEST_TIMEOUT
from caxton.api.routes import Route, integer
from caxton.api.tracing import start_accept
from caxton.config import parse_duration
from caxton.errors import Error, InvalidMessage, InvalidRequest
from caxton.messaging import Accepted, DeadLetter, Messaging
from caxton.wire.codec import NAME, PERFORMATIVES
from caxton.wire.timestamps import rfc3339

__all__ = ["WAIT_MARGIN", "dead_letter_dict", "json_response", "message_routes", "messaging_of"]

_TEXT_FIELDS = ("conversation_id", "reply_with", "in_reply_to", "protocol", "ontology", "language")
_IDS: dict[str, Any] = {
    "message_id": {"type": "string"},
    "conversation_id": {"type": "string"},
    "sender": {"type": "string", "description": "the caller's name (made up if not given)"},
    "receivers": {"type": "array", "items": {"type": "string"}},
}
_NAME: dict[str, Any] = {"type": "string", "pattern": NAME.pattern}
_MESSAGE: dict[str, Any] = {
    "type": "object",
    "required": ["performative", "receiver"],
    "properties": {
        "performative": {
            "enum": sorted(PERFORMATIVES),
            "description": "one of the 22 FIPA acts (the FIPA hyphen spelling and any case "
            "are accepted too, and stored as listed)",
        },
        "receiver": {
            "anyOf": [
                _NAME,
                {"type": "array", "items": _NAME, "minItems": 1, "uniqueItems": True},
            ]
        },
        "sender": {**_NAME, "description": "the caller's name; not an agent's"},
        "content": {"description": "any JSON value"},
        "reply_by": {"type": "string", "format": "date-time"},
        **{f: {"type": "string", "maxLength": 256} for f in _TEXT_FIELDS},
    },
}
MESSAGE_BODY = {
    "application/json": {
        "oneOf": [
            _MESSAGE,
            {
                "type": "array",
                "items": _MESSAGE,
                "maxItems": 1000,
                "description": "bulk send: all validated first, then accepted together",
            },
        ]
    }
}
REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {**_IDS, "reply": {**_MESSAGE, "description": "only with ?wait="}},
}
REDRIVEN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"dead_letter_id": {"type": "integer"}, **_IDS},
}
_PAGE = {n: {"type": "integer"} for n in ("total", "offset", "limit")}
#: With a cluster: the members that did not answer a gathering query in time.
_MISSING = {
    "missing_nodes": {
        "type": "array",
        "items": {"type": "string"},
        "description": "cluster only: members whose part is not in this page",
    }
}
CONVERSATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "conversation_id": {"type": "string"},
        "messages": {
            "type": "array",
            "items": {
                **_MESSAGE,
                "properties": {
                    **_MESSAGE["properties"],
                    "node": {
                        "type": "string",
                        "description": "cluster only: the node that keeps the message",
                    },
                },
            },
        },
        **_PAGE,
        **_MISSING,
    },
}
DEAD_LETTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "reason": {
            "enum": [
                "unknown_receiver",
                "agent_not_running",
                "expired",
                "handler_failed",
                "mailbox_full",
            ]
        },
        "receiver": {"type": "string"},
        "sender": {"type": ["string", "null"]},
        "message_id": {"type": ["string", "null"]},
        "conversation_id": {"type": ["string", "null"]},
        "details": {"type": "object"},
        "created_at": {"type": "string", "format": "date-time"},
        "redriven_at": {"type": ["string", "null"], "format": "date-time"},
        "message": {"type": ["object", "null"], "description": "the message as stored"},
        "node": {"type": "string", "description": "cluster only: the node that keeps it"},
    },
}
DEAD_LETTERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "dead_letters": {"type": "array", "items": DEAD_LETTER_SCHEMA},
        **_PAGE,
        **_MISSING,
    },
}

#: ``?wait=`` is at most ``request_timeout`` minus this many seconds.
WAIT_MARGIN = 1.0
_encode = msgspec.json.Encoder().encode
_decode_bulk = msgspec.json.Decoder(list[msgspec.Raw]).decode


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """``data`` as a JSON response, encoded with msgspec (the hot path)."""
    return web.Response(
        body=_encode(data), status=status, content_type="application/json", headers=headers
    )


def messaging_of(request: web.Request) -> Messaging:
    """The node's messaging layer."""
    messaging: Messaging = request.app[NODE].messaging
    return messaging


def _page(request: web.Request) -> tuple[int, int]:
    offset = query_int(request, "offset", 0, 0, 2**31)
    limit = query_int(request, "limit", 100, 1, MAX_PAGE)
    return offset, limit


def _wait_seconds(request: web.Request) -> float | None:
    text = request.query.get("wait")
    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise InvalidRequest(f"wait: {exc}", details={"field": "wait"}) from None
    if seconds <= 0:
        raise InvalidRequest("wait: must be more than 0 (e.g. 5s)", details={"field": "wait"})
    cap = max(request.app[REQUEST_TIMEOUT] - WAIT_MARGIN, 0.001)
    return min(seconds, cap)


def _ids(accepted: Accepted) -> dict[str, Any]:
    return {
        "message_id": accepted.message_id,
        "conversation_id": accepted.conversation_id,
        "sender": accepted.sender,
        "receivers": list(accepted.receivers),
    }


#: The largest row id SQLite has.
_MAX_ID = 2**63 - 1
#: Messages one bulk request may carry.
MAX_BULK = 1000


async def _send_bulk(request: web.Request, body: bytes) -> web.Response:
    """A JSON array of messages: all validated first (nothing is accepted if one is bad),
    then committed in one write and routed (`Messaging.submit_many`); 202 with one entry per
    message (messages without a ``sender`` share one made-up client name)."""
    if "wait" in request.query:
        raise InvalidRequest(
            "wait: ?wait= takes one message, not an array", details={"field": "wait"}
        )
    try:
        # Each message stays raw JSON (a slice of the body): `submit_many` decodes it once as
        # the single-message path does, so no dict is built here only to be copied, checked
        # for string keys and re-encoded for its size there. msgspec checks the syntax of
        # the whole array while it finds the slices, so bad JSON is still refused here.
        raws = _decode_bulk(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidMessage(f"the request body is not valid JSON: {exc}") from None
    items = [bytes(raw) for raw in raws]
    if not items:
        raise InvalidMessage("a bulk request is a non-empty JSON array of messages")
    if len(items) > MAX_BULK:
        raise InvalidRequest(
            f"a bulk request carries at most {MAX_BULK} messages, got {len(items)}",
            details={"limit": MAX_BULK, "count": len(items)},
        )
    # `submit_many` validates every message before it stores anything: the first bad one
    # raises (400/413 with ``details.index`` and the field) and nothing is accepted.
    accepting = start_accept(request)
    if accepting is None:
        results = await messaging_of(request).submit_many(items)
    else:  # one accept span for the request; every message carries its context
        span, traceparent = accepting
        with span:
            results = await messaging_of(request).submit_many(items, traceparent=traceparent)
            span.set_attribute("caxton.messages", len(items))
    accepted: list[dict[str, Any]] = []
    for index, result in enumerate(results):
        if isinstance(result, Error):
            # Accepted and committed, but a mailbox stayed full: dead-lettered, redrivable.
            accepted.append(
                {
                    "index": index,
                    "error": {
                        "code": result.code,
                        "message": result.message,
                        "details": result.details,
                    },
                }
            )
        else:
            accepted.append(_ids(result))
    return json_response({"accepted": accepted}, 202)


async def send(request: web.Request) -> web.Response:
    """``POST /api/v1/messages[?wait=5s]``: 202 with the ids, or 200 with the reply.

    A JSON array body is a bulk send (`_send_bulk`).
    """
    unknown = sorted(set(request.query) - {"wait"})
    if unknown:
        raise InvalidRequest(
            f"unknown query parameter(s) {', '.join(unknown)}; expected wait",
            details={"fields": unknown},
        )
    body = await request.read()
    if body.lstrip()[:1] == b"[":
        # The array is one more level: each message in it may nest as deep as one sent alone.
        check_depth(body, limit=MAX_JSON_DEPTH + 1)
        return await _send_bulk(request, body)
    check_depth(body, what="the message")
    wait = _wait_seconds(request)
    if not body.strip():
        raise InvalidMessage("the request body must be a message (a JSON object)")
    accepting = start_accept(request)
    if accepting is None:
        accepted = await messaging_of(request).submit(body, wait=wait is not None)
    else:
        span, traceparent = accepting
        with span:  # ended here, with the error recorded if the submit raised
            accepted = await messaging_of(request).submit(
                body, wait=wait is not None, traceparent=traceparent
            )
            span.set_attributes(
                {
                    "messaging.message.id": accepted.message_id,
                    "messaging.message.conversation_id": accepted.conversation_id,
                    "messaging.destination.name": ",".join(accepted.receivers),
                }
            )
    ids = _ids(accepted)
    if wait is None or accepted.reply is None:
        return json_response(ids, 202)
    reply = await accepted.reply.wait(wait)
    if reply is None:
        raise ApiError(
            504,
            "UNAVAILABLE",
            f"no reply to {accepted.sender} in conversation {accepted.conversation_id} "
            f"within {wait:g}s (the message was accepted and stays in the conversation)",
            details={**ids, "wait_seconds": wait},
        )
    # docs/api.md (POST /api/v1/messages): the answer *is* the first message back; the
    # request's ids ride in headers.
    return json_response(
        reply,
        headers={
            "X-Caxton-Message-Id": accepted.message_id,
            "X-Caxton-Conversation-Id": accepted.conversation_id,
        },
    )


async def conversation(request: web.Request) -> web.Response:
    """``GET /api/v1/conversations/{id}?offset=&limit=``: its messages in order."""
    conversation_id = request.match_info["id"]
    offset, limit = _page(request)
    extra: dict[str, Any] = {}
    remote = request.app[NODE].cluster_messages
    if remote is not None:  # a cluster: every alive member's part, merged by time
        page = await remote.gather.conversation(conversation_id, offset, limit)
        messages, total = page.items, page.total
        extra["missing_nodes"] = page.missing
    else:
        messages, total = await messaging_of(request).conversation(
            conversation_id, offset=offset, limit=limit
        )
    if total == 0 and not extra.get("missing_nodes"):
        raise ApiError(
            404,
            "NOT_FOUND",
            f"no messages in conversation {conversation_id!r} (unknown, or pruned)",
            details={"conversation_id": conversation_id},
        )
    return json_response(
        {
            "conversation_id": conversation_id,
            "messages": messages,
            "total": total,
            "offset": offset,
            "limit": limit,
        }
        | extra
    )


def dead_letter_dict(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter's JSON form (times in RFC 3339, UTC)."""
    data = asdict(letter)
    data["created_at"] = rfc3339(letter.created_at)
    data["redriven_at"] = None if letter.redriven_at is None else rfc3339(letter.redriven_at)
    return data


async def dead_letters(request: web.Request) -> web.Response:
    """``GET /api/v1/dead-letters?offset=&limit=``: oldest first."""
    offset, limit = _page(request)
    remote = request.app[NODE].cluster_messages
    if remote is not None:  # a cluster: every alive member's, oldest first, with its node
        page = await remote.gather.dead_letters(offset, limit)
        return json_response(
            {
                "dead_letters": [_gathered_letter(item) for item in page.items],
                "total": page.total,
                "offset": offset,
                "limit": limit,
                "missing_nodes": page.missing,
            }
        )
    letters, total = await messaging_of(request).dead_letters(offset=offset, limit=limit)
    return json_response(
        {
            "dead_letters": [dead_letter_dict(letter) for letter in letters],
            "total": total,
            "offset": offset,
            "limit": limit,
        }
    )


def _gathered_letter(item: dict[str, Any]) -> dict[str, Any]:
    """A dead letter from `Gather` (unix times) in the API's form (RFC 3339)."""
    data = dict(item)
    data["created_at"] = rfc3339(float(item["created_at"]))
    redriven = item.get("redriven_at")
    data["redriven_at"] = None if redriven is None else rfc3339(float(redriven))
    return data


async def redrive(request: web.Request) -> web.Response:
    """``POST /api/v1/dead-letters/{id}/redrive``: deliver its message again (same ids)."""
    text = request.match_info["id"]
    if not (text.isascii() and text.isdigit()):  # isdigit alone is true for "¹" and "٣"
        raise InvalidRequest(
            f"id: expected a dead letter's number (ASCII digits), got {text!r:.40}",
            details={"field": "id"},
        )
    if not ascii_digits(text) or int(text) > _MAX_ID:  # no row has it; SQLite can't be asked
        raise ApiError(404, "NOT_FOUND", f"no dead letter {text:.40}", details={"id": text[:40]})
    wanted = request.query.get("node")
    if wanted is not None and (elsewhere := await _redrive_on(request, wanted)) is not None:
        return elsewhere
    dead_id = int(text)
    try:
        accepted = await messaging_of(request).redrive(dead_id)
    except InvalidMessage:
        record = await request.app[NODE].storage.messages.dead_letter(dead_id)
        if record is None:
            raise ApiError(
                404, "NOT_FOUND", f"no dead letter {dead_id}", details={"id": dead_id}
            ) from None
        raise
    return json_response({"dead_letter_id": dead_id, **_ids(accepted)}, 202)


_PAGE_QUERY = {
    "offset": integer("items to skip (default 0)", 0, 2**31),
    "limit": integer(f"page size (default 100, at most {MAX_PAGE})", 1, MAX_PAGE),
}


async def _redrive_on(request: web.Request, wanted: str) -> web.Response | None:
    """``?node=NAME``: a dead letter's id is its node's, so NAME's letter is redriven by NAME
    (its answer is the answer); None when NAME is this node."""
    link = request.app[NODE].cluster
    if link is None:
        raise InvalidRequest("node: only in a cluster", details={"field": "node"})
    if wanted == link.name:
        return None
    if link.membership.get(wanted) is None:
        raise InvalidRequest(
            f"node: no node called {wanted!r} in the cluster", details={"field": "node"}
        )
    from caxton.api.remote import forward  # (remote imports the routes of this module)
    from caxton.api.remote_wire import ApiCall

    return await forward(request, wanted, ApiCall("POST", request.path, [], b"", ""))


def redrive_route() -> list[Route]:
    """The redrive route alone (what other nodes reach through ``?node=``)."""
    return [route for route in message_routes() if route.handler is redrive]


def message_routes() -> list[Route]:
    """The messages, conversations and dead-letters routes."""
    return [
        Route(
            method="POST",
            path="/api/v1/messages",
            handler=send,
            summary="Send a FIPA-ACL message; with ?wait=, answer with the first reply",
            tag="messages",
            request_body=MESSAGE_BODY,
            responses={
                200: "With ?wait=: the first message back to the caller (the request's ids "
                "are in the X-Caxton-Message-Id and X-Caxton-Conversation-Id headers)",
                202: "Accepted (durable): the ids",
                400: "INVALID_REQUEST: names the field (details.field)",
                413: "PAYLOAD_TOO_LARGE: above runtime.max_message_size",
                429: "RESOURCE_LIMIT_EXCEEDED: a receiver's mailbox stayed full",
                504: "UNAVAILABLE: no reply within ?wait= (details has the ids)",
            },
            query={"wait": "wait this long for the first reply (e.g. 5s, 200ms)"},
            response_schema=REPLY_SCHEMA,
            status_schemas={200: {**_MESSAGE, "required": []}},
        ),
        Route(
            method="GET",
            path="/api/v1/conversations/{id}",
            handler=conversation,
            summary="A conversation's messages in order, one page at a time",
            tag="messages",
            responses={
                200: "One page of messages",
                400: "INVALID_REQUEST: bad offset or limit",
                404: "NOT_FOUND: no messages in that conversation",
            },
            query=_PAGE_QUERY,
            response_schema=CONVERSATION_SCHEMA,
        ),
        Route(
            method="GET",
            path="/api/v1/dead-letters",
            handler=dead_letters,
            summary="Dead letters, oldest first, with the reason",
            tag="messages",
            responses={200: "One page of dead letters", 400: "INVALID_REQUEST"},
            query=_PAGE_QUERY,
            response_schema=DEAD_LETTERS_SCHEMA,
        ),
        Route(
            method="POST",
            path="/api/v1/dead-letters/{id}/redrive",
            path_schemas={"id": {"type": "string", "pattern": "^[0-9]{1,19}$"}},
            handler=redrive,
            summary="Deliver a dead letter's message again to its receiver (same ids)",
            tag="messages",
            query={"node": "cluster: the node that keeps the dead letter (ids are per node)"},
            responses={
                202: "Accepted again",
                400: "INVALID_REQUEST: redriven already, or the id is not a number",
                404: "NOT_FOUND: no such dead letter",
                429: "RESOURCE_LIMIT_EXCEEDED: the mailbox stayed full",
            },
            response_schema=REDRIVEN_SCHEMA,
        ),
    ]
