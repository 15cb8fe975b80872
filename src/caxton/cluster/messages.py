"""`ClusterMessages`: messages across nodes, at least once (the messaging layer's `Remote`).

::

    remote = ClusterMessages(link, storage)          # before `Messaging`
    messaging = Messaging(config, storage, runtime=..., remote=remote)
    remote.attach(messaging)
    remote.start_forwarder()                          # before agents are restored
    ... restore the agents, recover ...
    await remote.open_inbox()                         # then take batches from other nodes
    ...
    await remote.aclose(budget)                       # inbox shut, outbox drained <= budget

The sending side: a message for an agent that ``link.directory`` places on another node (or a
reply to an API client that sent from another node, `RemoteClients`) is written to the SQLite
outbox in the same transaction as the message (`Remote` in `caxton.messaging.routing`): the
API's commit, the journal's flush of an agent's sends, or (timers, `failure` replies) one write
on the loop. Once committed, the rows (with their ``seq``) are handed to the `Forwarder`
(`committed`); it sends one request per node per round (`wire.encode_batch`, many messages
each) to ``caxton.node.<owner>.inbox`` and deletes what the owner acknowledged, retrying the
rest with backoff. The receiving side is `Inbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from caxton.clock import SYSTEM_CLOCK, Clock
from caxton.cluster import wire
from caxton.cluster.bus import Bus, Unsubscribe
from caxton.cluster.directory import Directory
from caxton.cluster.forwarder import Forwarder
from caxton.cluster.gather import Gather
from caxton.cluster.inbox import Inbox, RemoteClients
from caxton.cluster.membership import Membership
from caxton.cluster.outbox import RetryPolicy
from caxton.storage.outbox import OutboxEntry
from caxton.storage.sqlite import Storage
from caxton.tasks import TaskSet
from caxton.wire.header import message_id_of

if TYPE_CHECKING:
    from caxton.messaging import Messaging

__all__ = ["REQUEST_TIMEOUT", "ClusterMessages", "ClusterMessagesStatistics", "Placement"]

log = logging.getLogger("caxton.cluster.messages")

#: Seconds a batch request waits for the owner's acknowledgement (then it is retried).
REQUEST_TIMEOUT = 5.0
#: Requests in flight to one node at a time (each carries other receivers).
IN_FLIGHT_PER_NODE = 1
#: Seconds between two readings of the outbox depth and age (for the metrics).
REFRESH_INTERVAL = 1.0


class Placement(Protocol):
    """What this needs of the `ClusterLink`: its name, bus and directory (read every time:
    the registry may replace the directory)."""

    name: str
    directory: Directory

    @property
    def bus(self) -> Bus: ...

    @property
    def membership(self) -> Membership: ...


@dataclass(frozen=True, slots=True)
class ClusterMessagesStatistics:
    """Counters since start, and the outbox as last read (for the metrics)."""

    outbox_depth: int
    outbox_oldest_age: float
    requests: int
    failed_requests: int
    forwarded: int
    acknowledged: int
    retried: int
    received: int
    duplicates: int
    remote_clients: int
    early: int = 0
    early_acknowledged: int = 0


class ClusterMessages:
    """Cross-node delivery for one node (see the module docstring)."""

    def __init__(
        self,
        link: Placement,
        storage: Storage,
        *,
        clock: Clock = SYSTEM_CLOCK,
        policy: RetryPolicy | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self._link = link
        self.name = link.name
        self._storage = storage
        self._clock = clock
        self.request_timeout = request_timeout
        self.clients = RemoteClients(clock=clock)
        self.forwarder = Forwarder(
            storage.outbox,
            self._send,
            policy=policy or RetryPolicy(max_in_flight=IN_FLIGHT_PER_NODE),
            clock=clock,
            acks_behind=True,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._inbox: Inbox | None = None
        self._gather: Gather | None = None
        self._unsubscribe: list[Unsubscribe] = []
        self._tasks = TaskSet("cluster messages", log=log)
        self._depth = 0
        self._oldest_age = 0.0
        self._closed = False
        self._early_scheduled = False

    # -- the messaging layer's `Remote` --------------------------------------------------------

    def locate(self, name: str) -> str | None:
        """The node hosting ``name`` when it is another node (any thread; dict lookups)."""
        node = self._link.directory.owner(name)
        if node is None:
            return self.clients.get(name)
        return None if node == self.name else node

    def forward(self, receiver: str, data: bytes) -> bool:
        """Put one message that entered on the loop (a timer, a `failure`) in the outbox."""
        node = self.locate(receiver)
        if node is None:
            return False
        mid = message_id_of(data)
        if mid is None:
            return False
        rows = [(mid, node, receiver, data)]
        self.expect(rows)
        written = self._storage.outbox.enqueue_nowait(rows)
        written.add_done_callback(self._written)
        return True

    def expect(self, rows: Sequence[tuple[str, str, str, bytes]]) -> None:
        """Rows written on the loop (an API submit, a timer, a `failure` reply): the agents'
        messages for those receivers are not sent early before them (loop thread)."""
        self.forwarder.speculation.expect(rows, self._clock.wall())

    def early_sends(
        self,
    ) -> tuple[Callable[[tuple[bytes, str, str]], None], Callable[[], None]]:
        """`Journal.early`: agents' messages for other nodes go to the forwarder's
        `Speculation` as they are sent; ``ready`` (any thread) wakes the forwarder."""
        return self.forwarder.speculation.incoming.append, self._early_ready

    def _early_ready(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self.forwarder.wake()
            return
        loop = self._loop
        if loop is None or self._early_scheduled:
            return
        self._early_scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(self._wake_early)

    def _wake_early(self) -> None:
        self._early_scheduled = False
        self.forwarder.wake()

    def _written(self, done: Future[list[OutboxEntry]]) -> None:
        if done.exception() is None:
            self.committed(done.result())

    def committed(self, entries: Sequence[OutboxEntry]) -> None:
        """These outbox rows were committed (any thread): hand them to the forwarder."""
        loop = self._loop
        if loop is None or not entries:
            return
        if threading.get_ident() == self._loop_thread:
            self.forwarder.offer(entries)  # from a write awaited on the loop: no thread hop
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(self.forwarder.offer, entries)

    # -- lifecycle -----------------------------------------------------------------------------

    def attach(self, messaging: Messaging) -> None:
        """The messaging layer that delivers what arrives (built with this as its remote)."""
        self._inbox = Inbox(
            self.name,
            messaging,
            locate=self.locate,
            owner=lambda name: self._link.directory.owner(name),
            clients=self.clients,
            committed=self.committed,
        )
        self._gather = Gather(self.name, lambda: self._link.bus, self._alive_peers, messaging)
        self.forwarder.spans = self._inbox.spans  # tracing on: forwards are recorded

    @property
    def gather(self) -> Gather:
        """Conversations and dead letters from every member (after `attach`)."""
        if self._gather is None:
            raise RuntimeError("attach the messaging layer first")
        return self._gather

    def _alive_peers(self) -> list[str]:
        return [
            member.name
            for member in self._link.membership.members()
            if member.state == "alive" and member.name != self.name
        ]

    def start_forwarder(self) -> None:
        """Send the outbox (what a previous run left too) from now on."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.forwarder.start()
        self._tasks.service(self._refresh_loop(), "cluster outbox statistics")

    async def open_inbox(self) -> None:
        """Take batches from other nodes (once the agents are restored), answer queries."""
        if self._inbox is None:
            raise RuntimeError("attach the messaging layer first")
        inbox = self._inbox
        bus = self._link.bus

        async def respond(_: str, payload: bytes) -> bytes:
            return await inbox.receive(payload)

        self._unsubscribe.append(
            await bus.serve(wire.inbox_subject(self.name), respond, concurrent=True)
        )
        gather = self.gather

        async def answer(_: str, payload: bytes) -> bytes:
            return await gather.answer(payload)

        self._unsubscribe.append(await bus.serve(wire.query_subject(self.name), answer))

    async def close_inbox(self) -> None:
        """Stop taking batches (the senders keep them and retry)."""
        unsubscribe, self._unsubscribe = self._unsubscribe, []
        for one in unsubscribe:
            with contextlib.suppress(Exception):  # NATS is gone: nothing to take any more
                await one()

    async def drain(self, budget: float) -> int:
        """Wait up to ``budget`` seconds for the outbox to empty; how many entries are left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        self.forwarder.wake()
        while True:
            left = await self._storage.outbox.depth()
            if left == 0 or loop.time() >= deadline:
                return left
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))

    async def aclose(self, budget: float = 0.0) -> None:
        """Stop taking, send what waits for up to ``budget`` seconds, then stop sending; what
        was not acknowledged stays in the outbox for the next start. Idempotent."""
        await self.close_inbox()
        if self._closed:
            return
        self._closed = True
        if budget > 0 and self._loop is not None:
            try:
                left = await self.drain(budget)
            except Exception:  # the store is closing: what is left stays
                left = -1
            if left:
                log.info("cluster: %s messages stay in the outbox for the next start", left)
        await self.forwarder.aclose()
        await self._tasks.aclose()

    # -- the forwarder's transport -------------------------------------------------------------

    async def _send(self, node: str, entries: Sequence[OutboxEntry]) -> Collection[int]:
        return await self.send(node, entries)

    async def send(self, node: str, entries: Sequence[OutboxEntry]) -> Collection[int]:
        """One batch request to ``node``; the acknowledged ``seq`` values."""
        payload = wire.encode_batch(self.name, entries)
        reply = await self._link.bus.request(
            wire.inbox_subject(node), payload, self.request_timeout
        )
        return wire.decode_acks(reply)

    # -- statistics ----------------------------------------------------------------------------

    async def _refresh_loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # the store is closing: keep the last
                await self.refresh()
            await asyncio.sleep(REFRESH_INTERVAL)

    async def refresh(self) -> None:
        """Read the outbox depth and its oldest entry's age now."""
        outbox = self._storage.outbox
        self._depth = await outbox.depth()
        self._oldest_age = await outbox.oldest_age(time.time())

    def statistics(self) -> ClusterMessagesStatistics:
        forwarded = self.forwarder.statistics()
        inbox = self._inbox
        return ClusterMessagesStatistics(
            outbox_depth=self._depth,
            outbox_oldest_age=self._oldest_age,
            requests=forwarded.requests,
            failed_requests=forwarded.failed_requests,
            forwarded=forwarded.sent,
            acknowledged=forwarded.acked,
            retried=forwarded.retried,
            received=0 if inbox is None else inbox.received,
            duplicates=0 if inbox is None else inbox.duplicates,
            remote_clients=len(self.clients),
            early=forwarded.early,
            early_acknowledged=forwarded.early_acked,
        )

    def metric_samples(self) -> Iterator[tuple[str, str, dict[str, str], Any, str]]:
        """Samples for the metrics' snapshot collector (docs/observability.md)."""
        stats = self.statistics()
        yield (
            "cluster_outbox_depth",
            "gauge",
            {},
            stats.outbox_depth,
            "Messages for other nodes not acknowledged yet.",
        )
        yield (
            "cluster_outbox_oldest_age_seconds",
            "gauge",
            {},
            stats.outbox_oldest_age,
            "Age of the oldest message in the outbox.",
        )
        yield (
            "cluster_forward_requests",
            "counter",
            {},
            stats.requests,
            "Batch requests sent to other nodes.",
        )
        yield (
            "cluster_forward_failed_requests",
            "counter",
            {},
            stats.failed_requests,
            "Batch requests that failed (no answer, no responder).",
        )
        yield (
            "cluster_forwarded_messages",
            "counter",
            {},
            stats.forwarded,
            "Messages sent to other nodes (retries included).",
        )
        yield (
            "cluster_forward_early",
            "counter",
            {},
            stats.early,
            "Agents' messages sent to other nodes before their outbox row committed.",
        )
        yield (
            "cluster_forward_early_acknowledged",
            "counter",
            {},
            stats.early_acknowledged,
            "Of those, the ones the owning node acknowledged at once.",
        )
        yield (
            "cluster_forward_acknowledged",
            "counter",
            {},
            stats.acknowledged,
            "Messages other nodes acknowledged.",
        )
        yield (
            "cluster_forward_retried",
            "counter",
            {},
            stats.retried,
            "Messages scheduled again after a failed or partial request.",
        )
        yield (
            "cluster_received_messages",
            "counter",
            {},
            stats.received,
            "Messages from other nodes committed here.",
        )
        yield (
            "cluster_received_duplicates",
            "counter",
            {},
            stats.duplicates,
            "Messages from other nodes dropped as duplicates.",
        )
