"""The receiving side of cross-node messages: commit a batch, then deliver it locally.

`Inbox.receive` takes one batch from an origin node (`wire.decode_batch`) and:

1. records every (message_id, receiver) and writes the new ones in ONE transaction
   (`OutboxRepository.accept`): a pending row for each receiver that is an agent of this node,
   an outbox row for a receiver that the directory places on a third node (never back to the
   origin: a disagreement between two directories must not bounce a message forever);
2. notes which node each non-agent sender (an API client) is on (`RemoteClients`), so a reply
   to it is sent back there;
3. delivers the new ones in the batch's order, as the router does for any committed delivery
   (a batch whose entries are all ``fresh``, never sent before, cannot hold a duplicate: it is
   delivered while the write of step 1 commits, and step 4 waits for that commit):
   a local agent's mailbox (waiting a bounded time for room in a full one; then, or for a
   stopped agent, a dead letter here with the `failure` reply owed to the sender, which goes
   back across), an API client waiting here (`Replies`), else a dead letter
   ``unknown_receiver``;
4. only then answers with the ``seq`` of every entry, duplicates included (they were
   committed by an earlier request whose answer was lost).

Batches are received concurrently (the bus answers each request in its own task), but two
batches that share a receiver are handled one after the other, in arrival order of their
turn: a sender never has two requests in flight carrying the same receiver (`RetryPolicy`),
yet a request that timed out on the sender may still be running here when its retry (the
same entries and later ones) arrives, and the retry must not deliver the later ones first.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from time import time_ns
from typing import TYPE_CHECKING

from caxton.clock import SYSTEM_CLOCK, Clock
from caxton.cluster import spans, wire
from caxton.messaging.deadletters import Reason
from caxton.runtime.delivery import Origin
from caxton.storage.messages import MessageBatch
from caxton.storage.outbox import OutboxEntry
from caxton.wire.header import Header, expired, header_of

if TYPE_CHECKING:
    from caxton.messaging import Messaging

__all__ = ["CLIENT_TTL", "MAILBOX_WAIT", "MAX_CLIENTS", "Inbox", "RemoteClients"]

#: API clients on other nodes remembered as reply addresses (least recently seen forgotten).
MAX_CLIENTS = 65_536
#: A remembered client is forgotten this long (seconds) after its last message.
CLIENT_TTL = 3600.0
#: The longest one batch waits for room in a full mailbox (seconds) before dead-lettering.
MAILBOX_WAIT = 1.0


#: One delivery of a batch: (message_id, receiver, body, header, expired, local, the third
#: node it goes on to).
_Planned = tuple[str, str, bytes, Header, bool, bool, str | None]


class RemoteClients:
    """Which node each API client that sent messages here is on (bounded, with a TTL)."""

    def __init__(
        self,
        *,
        max_entries: int = MAX_CLIENTS,
        ttl: float = CLIENT_TTL,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def note(self, client: str, node: str) -> None:
        """``client`` sent a message from ``node`` now (loop thread)."""
        entries = self._entries
        entries[client] = (node, self._clock.monotonic())
        entries.move_to_end(client)
        while len(entries) > self._max:
            entries.popitem(last=False)

    def get(self, client: str) -> str | None:
        """The node ``client`` is on, if it sent something within the TTL (any thread)."""
        entry = self._entries.get(client)
        if entry is None or self._clock.monotonic() - entry[1] > self._ttl:
            return None
        return entry[0]


class Inbox:
    """Receives batches for this node (see the module docstring); loop thread."""

    def __init__(
        self,
        name: str,
        messaging: Messaging,
        *,
        locate: Callable[[str], str | None],
        owner: Callable[[str], str | None],
        clients: RemoteClients,
        committed: Callable[[Sequence[OutboxEntry]], None],
        mailbox_wait: float = MAILBOX_WAIT,
    ) -> None:
        """``locate``: the node hosting a name when it is another one; ``owner``: the
        directory's answer (to tell agents from clients); ``committed``: wake the forwarder
        after re-forwarded rows were written."""
        self.name = name
        self._messaging = messaging
        #: With tracing on: where deliveries of traced messages are recorded (`cluster.spans`).
        self.spans = getattr(getattr(messaging, "runtime", None), "spans", None)
        self._locate = locate
        self._owner = owner
        self._clients = clients
        self._committed = committed
        self._mailbox_wait = mailbox_wait
        #: Deliveries received and committed, and duplicates dropped, since start.
        self.received = 0
        self.duplicates = 0
        self.reforwarded = 0
        #: The batch being handled for each receiver (done when it has been delivered).
        self._busy: dict[str, asyncio.Future[None]] = {}

    async def receive(self, payload: bytes) -> bytes:
        """Handle one batch; the acknowledgement to send back."""
        origin, entries = wire.decode_batch(payload)
        receivers = {entry[2] for entry in entries}
        busy = self._busy
        while waits := {busy[r] for r in receivers if r in busy}:
            await asyncio.wait(waits)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for receiver in receivers:
            busy[receiver] = turn

        def delivered() -> None:  # the next batch for these receivers may be delivered now
            if not turn.done():
                for receiver in receivers:
                    if busy.get(receiver) is turn:
                        del busy[receiver]
                turn.set_result(None)

        try:
            return await self._receive(origin, entries, delivered)
        finally:
            delivered()

    async def _receive(
        self, origin: str, entries: list[wire.WireEntry], delivered: Callable[[], None]
    ) -> bytes:
        started = time_ns()
        router = self._messaging.router
        is_local, locate, owner = router.is_local, self._locate, self._owner
        plan: list[_Planned] = []
        for _, mid, receiver, body, _ in entries:
            header = header_of(body)
            late = expired(header)
            local = not late and is_local(receiver)
            node = None
            if not local and not late:
                node = locate(receiver)
                if node == origin:
                    node = None
            sender = header.sender
            if isinstance(sender, str) and not is_local(sender) and owner(sender) is None:
                self._clients.note(sender, origin)
            plan.append((mid, receiver, body, header, late, local, node))

        batch = MessageBatch()

        def build(duplicates: frozenset[tuple[str, str]]) -> MessageBatch:
            for mid, receiver, body, _, _, local, node in plan:
                if (mid, receiver) in duplicates:
                    continue
                if local:
                    batch.pending.append((mid, receiver, body))
                elif node is not None:
                    batch.outbox.append((mid, node, receiver, body))
            return batch

        keys = [(mid, receiver) for mid, receiver, *_ in plan]
        accepted = self._messaging.storage.outbox.accept_nowait(keys, build, time.time())
        if all(entry[4] for entry in entries):
            # First sends: none can be a duplicate, so they are delivered while the write
            # commits (the acknowledgement still waits for it).
            reforwarded = await self._deliver(plan, frozenset())
            self._traced(origin, plan, frozenset(), started)
            # A later batch for these receivers may be delivered before this one commits: its
            # write is queued after this one's, so it still sees these ids as taken.
            delivered()
            duplicates = await asyncio.wrap_future(accepted)
        else:
            duplicates = await asyncio.wrap_future(accepted)
            reforwarded = await self._deliver(plan, duplicates)
            self._traced(origin, plan, duplicates, started)
        self.duplicates += len(duplicates)
        self.received += len(plan) - len(duplicates)
        if reforwarded:
            self.reforwarded += reforwarded
            self._committed(batch.enqueued)
        return wire.encode_acks([entry[0] for entry in entries])

    def _traced(
        self,
        origin: str,
        plan: list[_Planned],
        duplicates: frozenset[tuple[str, str]],
        started: int,
    ) -> None:
        """With tracing on: a ``caxton.receive`` step per traced delivery (`cluster.spans`)."""
        if self.spans is not None:
            deliveries = [(p[0], p[1], p[2]) for p in plan if (p[0], p[1]) not in duplicates]
            spans.received(self.spans, origin, deliveries, started)

    async def _deliver(self, plan: list[_Planned], duplicates: frozenset[tuple[str, str]]) -> int:
        """Route the batch's new deliveries in order and show them on the event stream (as
        they are delivered, not when they are committed); how many go on to a third node."""
        router = self._messaging.router
        delivered: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + self._mailbox_wait
        full: set[str] = set()
        reforwarded = 0
        for mid, receiver, body, header, late, local, node in plan:
            if (mid, receiver) in duplicates:
                continue
            delivered.append(body)
            if node is not None:
                reforwarded += 1
                continue
            if not local:
                router.not_local(receiver, body, Origin.LOOP, forward=False)
                continue
            reason = router.route_nowait(
                receiver, body, local=True, late=late, held=receiver in full
            )
            if reason is Reason.MAILBOX_FULL and receiver not in full:
                wait = max(0.0, deadline - asyncio.get_running_loop().time())
                reason = await router.wait_for_room(receiver, body, wait)
                if reason is Reason.MAILBOX_FULL:
                    full.add(receiver)
            if reason is not None:
                router.dead_letter_soon(receiver, body, header, reason, notify=True, pending=True)
        bus = self._messaging.bus
        if delivered and len(bus):
            bus.publish_messages(delivered)
        return reforwarded
