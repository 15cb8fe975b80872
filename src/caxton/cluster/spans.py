"""Spans of traced messages crossing nodes: ``caxton.forward`` here, ``caxton.receive`` there.

A message's body crosses nodes unchanged, so its ``traceparent`` (`caxton.wire.trace`) goes
with it: the receiving agent's ``caxton.handle`` span is a child of the sender's
``caxton.send`` span whatever node each ran on. These steps (children of that send span too)
show the hop itself: one ``caxton.forward`` per forward request an entry was in (its attempt,
the node, whether it was acknowledged) and one ``caxton.receive`` on the receiving node per
entry a batch delivered (the origin node). Only with tracing on (a `SpanLog`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from caxton.runtime.tracing import SpanLog
from caxton.storage.outbox import OutboxEntry
from caxton.wire.trace import HEAD

__all__ = ["forwarded", "received"]

_HEAD_LEN = len(HEAD)


def forwarded(
    spans: SpanLog, node: str, entries: Sequence[OutboxEntry], acked: Collection[int], start: int
) -> None:
    """Record one forward request to ``node`` (started at ``start``, ``time_ns``)."""
    for entry in entries:
        if entry.body[:_HEAD_LEN] == HEAD:
            spans.step(
                "caxton.forward",
                entry.body,
                start,
                {
                    "caxton.node": node,
                    "messaging.message.id": entry.message_id,
                    "messaging.destination.name": entry.receiver,
                    "caxton.attempt": entry.attempts + 1,
                    "caxton.acknowledged": entry.seq in acked,
                },
            )


def received(
    spans: SpanLog, origin: str, deliveries: Iterable[tuple[str, str, bytes]], start: int
) -> None:
    """Record the ``(message_id, receiver, body)`` deliveries of a batch from ``origin``."""
    for message_id, receiver, body in deliveries:
        if body[:_HEAD_LEN] == HEAD:
            spans.step(
                "caxton.receive",
                body,
                start,
                {
                    "caxton.origin_node": origin,
                    "messaging.message.id": message_id,
                    "messaging.destination.name": receiver,
                },
            )
