"""Conversations and dead letters from every node: ask the alive members, merge by time.

A message's history is kept by the node that accepted it (an API submit) or whose agent sent
it (the journal); a dead letter by the node that decided it. So a conversation that crossed
nodes, and the cluster's dead letters, are spread over the members. `Gather` answers
``caxton.node.<node>.query`` with this node's part, and gathers a page from this node and
every alive peer: each node's items stay in its own order and the nodes' lists are merged by
creation time. A member that did not answer (within `QUERY_TIMEOUT`, for each of its answers)
is named in `GatheredPage.missing`, and its items are simply not in the page (a member that
stops answering half-way: the page is merged again without it).

A node's part is read from the front as the merge takes it, never more than the page needs
(``offset + limit`` items of each node at most), in answers of at most `MAX_ITEMS` items and
`ANSWER_BYTES` (a NATS message is 1 MiB at most by default): the node answers from the
query's ``offset``, and the gathering node asks again from where that answer ended. So a page
at any offset sees every item of every node; a deep offset costs reading what comes before it.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import deque
from collections.abc import Awaitable, Callable
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
#: The most items one answer (or one read of this node's part) carries; the gathering node
#: asks again from where it ended, as often as the page needs.
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
        offset = max(0, int(query.get("offset", 0)))
        upto = min(int(query.get("upto", 100)), offset + MAX_ITEMS)
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
        upto = offset + limit
        names = [self.name, *(peer for peer in self._peers() if peer != self.name)]
        missing: list[str] = []
        while True:  # again without a member that stopped answering half-way
            parts = [
                _Part(name, self._fetcher(name, kind, key), upto)
                for name in names
                if name not in missing
            ]
            answered = await asyncio.gather(*(part.start() for part in parts))
            missing += [part.node for part, ok in zip(parts, answered, strict=True) if not ok]
            parts = [part for part, ok in zip(parts, answered, strict=True) if ok]
            try:
                page = await _merge(parts, offset, limit, when, unique=kind == "conversation")
            except _NoAnswer as exc:
                missing.append(exc.node)
                continue
            total = sum(part.total for part in parts)
            return GatheredPage(page, total, sorted(missing))

    def _fetcher(self, node: str, kind: str, key: str | None) -> _Fetch:
        """Reads ``node``'s items from an offset up to ``upto``: at most `MAX_ITEMS` (and,
        from a peer, `ANSWER_BYTES`) per call."""
        if node == self.name:

            async def local(offset: int, upto: int) -> tuple[list[dict[str, Any]], int]:
                return await self.local(kind, key, min(upto, offset + MAX_ITEMS), offset=offset)

            return local
        query = {"kind": kind, "id": key}

        async def ask(offset: int, upto: int) -> tuple[list[dict[str, Any]], int]:
            payload = wire.encode_query(query | {"offset": offset, "upto": upto})
            try:
                async with asyncio.timeout(self.timeout):
                    reply = await self._bus().request(
                        wire.query_subject(node), payload, self.timeout
                    )
                answer = wire.decode_query(reply)
                return list(answer["items"]), int(answer["total"])
            except (
                TimeoutError,
                NoResponders,
                KeyError,
                ValueError,
                TypeError,
                msgspec.DecodeError,
            ) as exc:
                log.info("cluster: %s did not answer a query: %s", node, exc)
                raise _NoAnswer(node) from exc

        return ask


_Fetch = Callable[[int, int], Awaitable[tuple[list[dict[str, Any]], int]]]


class _NoAnswer(Exception):
    """A member did not answer a query (in time, or sensibly)."""

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.node = node


class _Part:
    """One member's items of a query, read from the front in answers as the merge takes them
    (at most its first ``upto``: a page ending there needs no more of any one member)."""

    def __init__(self, node: str, fetch: _Fetch, upto: int) -> None:
        self.node = node
        self._fetch = fetch
        self._upto = upto
        self._buffer: deque[dict[str, Any]] = deque()
        self._read = 0
        self._done = False
        #: How many items the member has (from its first answer).
        self.total = 0

    async def start(self) -> bool:
        """The first answer; False if the member did not give it."""
        try:
            items, self.total = await self._fetch(0, self._upto)
        except _NoAnswer:
            return False
        self._took(items)
        return True

    async def next(self) -> dict[str, Any] | None:
        """The next item, asking for more when needed; None after the last."""
        if not self._buffer and not self._done:
            items, _ = await self._fetch(self._read, self._upto)
            self._took(items)
        return self._buffer.popleft() if self._buffer else None

    def _took(self, items: list[dict[str, Any]]) -> None:
        self._buffer.extend(items)
        self._read += len(items)
        self._done = not items or self._read >= min(self._upto, self.total)


async def _merge(
    parts: list[_Part],
    offset: int,
    limit: int,
    when: Callable[[dict[str, Any]], Any],
    *,
    unique: bool,
) -> list[dict[str, Any]]:
    """Items ``offset`` to ``offset + limit`` of the parts merged by ``when`` (each part's
    own order kept; ties go to the earlier part). ``unique``: a ``message_id`` counts once (a
    message is kept once; a retry must not show twice)."""
    heap: list[tuple[Any, int, dict[str, Any]]] = []
    for index, part in enumerate(parts):
        if (item := await part.next()) is not None:
            heap.append((when(item), index, item))
    heapq.heapify(heap)
    page: list[dict[str, Any]] = []
    seen: set[object] = set()
    skipped = 0
    while heap:
        _, index, item = heapq.heappop(heap)
        counted = True
        if unique and (mid := item.get("message_id")) is not None:
            counted = mid not in seen
            seen.add(mid)
        if counted:
            if skipped < offset:
                skipped += 1
            else:
                page.append(item)
                if len(page) >= limit:
                    break
        if (following := await parts[index].next()) is not None:
            heapq.heappush(heap, (when(following), index, following))
    return page


def _letter(letter: DeadLetter, node: str) -> dict[str, Any]:
    return asdict(letter) | {"node": node}
