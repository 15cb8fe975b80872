"""Conversations and dead letters from every node: ask the alive members, merge by time.

A message's history is kept by the node that accepted it (an API submit) or whose agent sent
it (the journal); a dead letter by the node that decided it. So a conversation that crossed
nodes, and the cluster's dead letters, are spread over the members. `Gather` answers
``caxton.node.<node>.query`` with this node's part, and gathers a page from this node and
every alive peer (concurrently, within `QUERY_TIMEOUT` each): each node's items stay in its
own order and the nodes' lists are merged by creation time. A member that did not answer in
time is named in `GatheredPage.missing`, and its items are simply not in the page.

A node's part can be larger than one NATS message (1 MiB by default): it answers from the
query's ``offset`` with as many items as fit in `ANSWER_BYTES`, and the gathering node asks
again from where that answer ended until it has the items it needs.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from caxton.cluster import wire
from caxton.cluster.bus import Bus, NoResponders
from caxton.messaging.deadletters import DeadLetter

if TYPE_CHECKING:
    from caxton.messaging import Messaging

__all__ = ["QUERY_TIMEOUT", "Gather", "GatheredPage"]

log = logging.getLogger("caxton.cluster.gather")

#: Seconds a query waits for each member's part.
QUERY_TIMEOUT = 2.0
#: The most items one node returns for one query (offset + limit is capped to this).
MAX_ITEMS = 10_000
#: The most bytes of items one answer carries (well under NATS's 1 MiB message limit); an
#: answer always carries at least one item.
ANSWER_BYTES = 512 * 1024


@dataclass(slots=True)
class GatheredPage:
    """One page gathered from the members: items (each with its ``node``), the total over the
    members that answered, and the members that did not."""

    items: list[dict[str, Any]]
    total: int
    missing: list[str] = field(default_factory=list)


def _message_time(item: dict[str, Any]) -> str:
    value = item.get("created_at")
    return value if isinstance(value, str) else ""


def _letter_time(item: dict[str, Any]) -> float:
    value = item.get("created_at")
    return float(value) if isinstance(value, int | float) else 0.0


class Gather:
    """This node's answers to queries, and pages gathered from all members."""

    def __init__(
        self,
        name: str,
        bus: Callable[[], Bus],
        peers: Callable[[], list[str]],
        messaging: Messaging,
        *,
        timeout: float = QUERY_TIMEOUT,
    ) -> None:
        """``peers``: the names of the alive members other than this one."""
        self.name = name
        self._bus = bus
        self._peers = peers
        self._messaging = messaging
        self.timeout = timeout

    # -- this node's part ----------------------------------------------------------------------

    async def answer(self, payload: bytes) -> bytes:
        """Answer one query (`local`): the items from its ``offset`` up to ``upto``, as many
        as fit in `ANSWER_BYTES`."""
        query = wire.decode_query(payload)
        upto = min(int(query.get("upto", 100)), MAX_ITEMS)
        offset = max(0, int(query.get("offset", 0)))
        kind, key = str(query.get("kind")), query.get("id")
        items, total = await self.local(kind, key, upto, offset=offset)
        size = 0
        for count, item in enumerate(items):
            size += len(wire.encode_query(item))
            if size > ANSWER_BYTES and count > 0:
                items = items[:count]
                break
        return wire.encode_query({"items": items, "total": total})

    async def local(
        self, kind: str, key: object, upto: int, *, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        """This node's items ``offset`` to ``upto`` of a query, and how many it has."""
        messaging = self._messaging
        limit = max(1, upto - offset)
        if kind == "conversation" and isinstance(key, str):
            messages, total = await messaging.conversation(key, offset=offset, limit=limit)
            return [m | {"node": self.name} for m in messages], total
        if kind == "dead_letters":
            letters, total = await messaging.dead_letters(offset=offset, limit=limit)
            return [_letter(letter, self.name) for letter in letters], total
        raise ValueError(f"unknown query {kind!r}")

    # -- gathering -----------------------------------------------------------------------------

    async def conversation(self, conversation_id: str, offset: int, limit: int) -> GatheredPage:
        """A page of a conversation from every member, merged by ``created_at``."""
        return await self._gather("conversation", conversation_id, offset, limit, _message_time)

    async def dead_letters(self, offset: int, limit: int) -> GatheredPage:
        """A page of the dead letters of every member, oldest first (each has its ``node``;
        its ``id`` is that node's)."""
        return await self._gather("dead_letters", None, offset, limit, _letter_time)

    async def _gather(
        self,
        kind: str,
        key: str | None,
        offset: int,
        limit: int,
        when: Callable[[dict[str, Any]], Any],
    ) -> GatheredPage:
        upto = min(offset + limit, MAX_ITEMS)
        peers = [peer for peer in self._peers() if peer != self.name]
        query = {"kind": kind, "id": key, "upto": upto}
        answers = await asyncio.gather(
            self.local(kind, key, upto), *(self._ask(peer, query, upto) for peer in peers)
        )
        lists: list[list[dict[str, Any]]] = []
        total = 0
        missing: list[str] = []
        for peer, answer in zip([self.name, *peers], answers, strict=True):
            if answer is None:
                missing.append(peer)
                continue
            items, count = answer
            lists.append(items)
            total += count
        merged = list(heapq.merge(*lists, key=when))
        if kind == "conversation":  # a message is kept once; a retry must not show twice
            seen: set[object] = set()
            unique = []
            for item in merged:
                mid = item.get("message_id")
                if mid is None or mid not in seen:
                    seen.add(mid)
                    unique.append(item)
            merged = unique
        return GatheredPage(merged[offset : offset + limit], total, sorted(missing))

    async def _ask(
        self, peer: str, query: dict[str, Any], upto: int
    ) -> tuple[list[dict[str, Any]], int] | None:
        """`peer`'s first `upto` items, asked for in as many answers as they take."""
        items: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    payload = wire.encode_query(query | {"offset": len(items)})
                    reply = await self._bus().request(
                        wire.query_subject(peer), payload, self.timeout
                    )
                    answer = wire.decode_query(reply)
                    part, total = list(answer["items"]), int(answer["total"])
                    items.extend(part)
                    if not part or len(items) >= min(upto, total):
                        return items, total
        except (
            TimeoutError,
            NoResponders,
            KeyError,
            ValueError,
            TypeError,
            msgspec.DecodeError,
        ) as exc:
            log.info("cluster: %s did not answer a query: %s", peer, exc)
            return None


def _letter(letter: DeadLetter, node: str) -> dict[str, Any]:
    return asdict(letter) | {"node": node}
