"""What crosses the wire between nodes for messages: subjects and msgpack payloads.

* ``caxton.node.<node>.inbox``: a request carrying one batch of outbox entries from one
  origin node; the reply lists the ``seq`` of every entry the receiver has committed (new
  ones) or had committed before (duplicates).
* ``caxton.node.<node>.query``: a request for what a node keeps (a conversation's messages,
  its dead letters); the reply is that node's part.

Batches are msgpack (msgspec), with the message bodies as raw bytes (no JSON re-encoding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from caxton.storage.outbox import OutboxEntry

__all__ = [
    "InboxBatch",
    "WireEntry",
    "decode_acks",
    "decode_batch",
    "decode_query",
    "encode_acks",
    "encode_batch",
    "encode_query",
    "inbox_subject",
    "query_subject",
]

#: One forwarded delivery: (seq on the origin, message_id, receiver, body, fresh). ``fresh``:
#: the origin never sent it before (it cannot be a duplicate of an earlier request).
WireEntry = tuple[int, str, str, bytes, bool]
#: A batch: (origin node, entries in the origin's order).
InboxBatch = tuple[str, list[WireEntry]]

_batch_decoder = msgspec.msgpack.Decoder(InboxBatch)
_acks_decoder = msgspec.msgpack.Decoder(list[int])
_query_decoder = msgspec.msgpack.Decoder(dict[str, Any])
_encoder = msgspec.msgpack.Encoder()


def inbox_subject(node: str) -> str:
    """Where ``node`` takes message batches."""
    return f"caxton.node.{node}.inbox"


def query_subject(node: str) -> str:
    """Where ``node`` answers queries about what it keeps."""
    return f"caxton.node.{node}.query"


def encode_batch(origin: str, entries: Sequence[OutboxEntry]) -> bytes:
    """One request's payload: ``entries`` from ``origin``, in order."""
    return _encoder.encode(
        (origin, [(e.seq, e.message_id, e.receiver, e.body, e.fresh) for e in entries])
    )


def decode_batch(payload: bytes) -> InboxBatch:
    """The batch in a request (raises `msgspec.DecodeError` / `ValidationError`)."""
    return _batch_decoder.decode(payload)


def encode_acks(seqs: Sequence[int]) -> bytes:
    return _encoder.encode(list(seqs))


def decode_acks(payload: bytes) -> list[int]:
    return _acks_decoder.decode(payload)


def encode_query(body: dict[str, Any]) -> bytes:
    return _encoder.encode(body)


def decode_query(payload: bytes) -> dict[str, Any]:
    return _query_decoder.decode(payload)
