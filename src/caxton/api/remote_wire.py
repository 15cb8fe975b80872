"""An HTTP request to an agent on another node, as it crosses NATS (msgpack via msgspec).

The entry node (the one the client called) has authenticated the caller; it sends an `ApiCall`
(method, path, query, body, content type) to ``caxton.node.<owner>.api`` and answers the client
with the owner's `ApiReply` (status, content type, body, Location). A body above one NATS
message (a large module) is sent in parts of `PART` bytes first. Anything that does not decode
is answered with a 400 envelope, never an exception.
"""

from __future__ import annotations

import json

import msgspec

__all__ = ["ApiCall", "ApiReply", "api_subject", "decode_call", "decode_reply", "error_reply"]


#: Bytes of body in one part of a large call (NATS messages are 1 MiB by default).
PART = 512 * 1024


def api_subject(node: str) -> str:
    """Where ``node`` answers agent API calls from the other nodes."""
    return f"caxton.node.{node}.api"


class ApiCall(msgspec.Struct, frozen=True):
    method: str
    path: str
    query: list[tuple[str, str]]
    body: bytes
    content_type: str
    #: A body larger than one NATS message comes in parts: each part but the last carries
    #: ``upload`` (an id) and ``last = False``; the last one carries the call itself.
    upload: str = ""
    last: bool = True


class ApiReply(msgspec.Struct, frozen=True):
    status: int
    content_type: str
    body: bytes
    location: str | None = None


encode = msgspec.msgpack.encode
decode_call = msgspec.msgpack.Decoder(ApiCall).decode
decode_reply = msgspec.msgpack.Decoder(ApiReply).decode


def error_reply(status: int, code: str, message: str, **details: object) -> ApiReply:
    """A reply carrying the JSON error envelope."""
    body = {"error": {"code": code, "message": message, "details": details}}
    return ApiReply(status, "application/json", json.dumps(body).encode())
