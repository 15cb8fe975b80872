"""What crosses the wire between nodes for messages: subjects and msgpack payloads.

* ``caxton.node.<node>.inbox``: a request carrying one batch of outbox entries from one
  origin node; the reply (`Acks`) lists the ``seq`` of every entry the receiver has committed
  (new ones) or had committed before (duplicates). When the batch says the origin listens for
  commit notices (``notify``), the receiver may answer once it has delivered the batch, before
  its write commits: those entries are listed as ``pending``, and their commit is announced
  later on the origin's ``committed`` subject.
* ``caxton.node.<origin>.committed``: a commit notice (`Notice`): entries of batches answered
  as pending are committed now.
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
    "Acks",
    "InboxBatch",
    "Notice",
    "WireEntry",
    "committed_subject",
    "decode_acks",
    "decode_batch",
    "decode_notice",
    "decode_query",
    "encode_acks",
    "encode_batch",
    "encode_notice",
    "encode_query",
    "inbox_subject",
    "query_subject",
]

#: One forwarded delivery: (seq on the origin, message_id, receiver, body, fresh). ``fresh``:
#: the origin never sent it before (it cannot be a duplicate of an earlier request).
WireEntry = tuple[int, str, str, bytes, bool]


class InboxBatch(msgspec.Struct, array_like=True, frozen=True):
    """A batch: the origin node, its entries in the origin's order, and whether the origin
    listens for commit notices (then the reply may come before the commit)."""

    origin: str
    entries: list[WireEntry]
    notify: bool = False


class Acks(msgspec.Struct, array_like=True, frozen=True):
    """The reply to a batch: ``seq`` values committed, and delivered but not yet committed
    (a `Notice` follows for those)."""

    committed: list[int]
    pending: list[int] = []


class Notice(msgspec.Struct, array_like=True, frozen=True):
    """The receiving node has committed these ``seq`` values of the origin's batches."""

    node: str
    seqs: list[int]


_batch_decoder = msgspec.msgpack.Decoder(InboxBatch)
_acks_decoder = msgspec.msgpack.Decoder(Acks)
_notice_decoder = msgspec.msgpack.Decoder(Notice)
_query_decoder = msgspec.msgpack.Decoder(dict[str, Any])
_encoder = msgspec.msgpack.Encoder()


def inbox_subject(node: str) -> str:
    """Where ``node`` takes message batches."""
    return f"caxton.node.{node}.inbox"


def query_subject(node: str) -> str:
    """Where ``node`` answers queries about what it keeps."""
    return f"caxton.node.{node}.query"


def committed_subject(node: str) -> str:
    """Where ``node`` hears that its batches answered as pending are committed."""
    return f"caxton.node.{node}.committed"


def encode_batch(origin: str, entries: Sequence[OutboxEntry], *, notify: bool = False) -> bytes:
    """One request's payload: ``entries`` from ``origin``, in order."""
    return _encoder.encode(
        (origin, [(e.seq, e.message_id, e.receiver, e.body, e.fresh) for e in entries], notify)
    )


def decode_batch(payload: bytes) -> InboxBatch:
    """The batch in a request (raises `msgspec.DecodeError` / `ValidationError`)."""
    return _batch_decoder.decode(payload)


def encode_acks(committed: Sequence[int], pending: Sequence[int] = ()) -> bytes:
    return _encoder.encode((list(committed), list(pending)))


def decode_acks(payload: bytes) -> Acks:
    """The reply to a batch (raises `msgspec.DecodeError` / `ValidationError`)."""
    return _acks_decoder.decode(payload)


def encode_notice(node: str, seqs: Sequence[int]) -> bytes:
    return _encoder.encode((node, list(seqs)))


def decode_notice(payload: bytes) -> Notice:
    """A commit notice (raises `msgspec.DecodeError` / `ValidationError`)."""
    return _notice_decoder.decode(payload)


def encode_query(body: dict[str, Any]) -> bytes:
    return _encoder.encode(body)


def decode_query(payload: bytes) -> dict[str, Any]:
    return _query_decoder.decode(payload)
