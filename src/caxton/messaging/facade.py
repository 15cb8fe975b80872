"""`Messaging`: the messaging layer's facade for the node and the API.

Composition (the node does this)::

    messaging = Messaging(
        config,
        storage,
        # The runtime gets its `Delivery` port (a `DeliveryPort`) at construction; node_events
        # forwards message_failed / state changes to it.
        runtime=lambda delivery: Runtime(config.runtime, engine=..., delivery=delivery,
                                         events=node_events(delivery)),
    )
    runtime = messaging.runtime
    await messaging.start(); await runtime.start()
    ... start the agents ...
    await messaging.recover()            # deliver again what a previous run did not handle
    ...
    await messaging.aclose()             # before storage.aclose(), after runtime.aclose()

The facade owns one collaborator per job and wires them here, in its constructor (and
nowhere else): `EventBus` (live events), `Replies` (API clients waiting for replies),
`DeadLetters` (stored dead letters), `History` (the conversations and the `Journal` of agents'
messages), `DeliveryPort` (what the runtime is handed; it builds the runtime and the `Router`,
the routing rule), `Intake` (submit, redrive, recovery) and `BulkIntake` (bulk submit), which
commit through one `GroupCommit`, and `MessagingMetrics`. The facade itself runs the
background tasks (journal flush, retention) and delegates the rest.

Durability: `submit` commits before it returns; agent-to-agent messages go through the
`journal` (see there for the exact guarantee). Everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from caxton.config.schema import Config
from caxton.errors import Error
from caxton.messaging import deadletters as dl
from caxton.messaging.bulk import BulkIntake
from caxton.messaging.bus import EventBus, Subscription
from caxton.messaging.history import History
from caxton.messaging.intake import Accepted, GroupCommit, Intake
from caxton.messaging.metrics import MessagingMetrics, MessagingStatistics
from caxton.messaging.options import MessagingOptions
from caxton.messaging.port import DeliveryPort
from caxton.messaging.replies import Replies
from caxton.messaging.routing import Remote, Router
from caxton.storage.sqlite import Storage
from caxton.tasks import TaskSet

if TYPE_CHECKING:
    from caxton.runtime.runtime import Runtime

__all__ = ["Accepted", "Messaging"]


class Messaging:
    """Routing, conversations, at-least-once delivery, dead letters and the event bus."""

    def __init__(
        self,
        config: Config,
        storage: Storage,
        *,
        runtime: Callable[[DeliveryPort], Runtime],
        options: MessagingOptions | None = None,
        forward: Callable[[str, bytes], bool] | None = None,
        remote: Remote | None = None,
    ) -> None:
        """``runtime`` builds the runtime around its `Delivery` port (a `DeliveryPort`);
        ``forward(receiver, data)`` (the embedder's hook) may take messages for names that are
        neither local agents nor known clients (True: it took it); ``remote``: the other
        nodes of the cluster (messages for their agents go to the outbox)."""
        #: The flush and prune loops, and the dead letters being written.
        self._tasks = TaskSet("messaging")
        self._closed = False
        self.config = config
        self.storage = storage
        self.options = options = options or MessagingOptions()
        self.max_message_size = max_size = config.runtime.max_message_size
        self.bus = bus = EventBus()
        self.replies = replies = Replies(options.max_clients)
        self.letters = letters = dl.DeadLetters(storage.messages, bus)
        self.history = history = History(storage, bus, letters, options)
        self.journal = history.journal
        if remote is not None:
            history.journal.outboxed = remote.committed
            history.journal.early = remote.early_sends()
        per_second = config.runtime.max_dead_letters_per_second
        self.port = port = DeliveryPort(
            history.journal,
            bus,
            runtime=runtime,
            router=lambda built: Router(
                built,
                replies,
                letters,
                self._spawn,
                forward=forward,
                remote=remote,
                dead_letters_per_second=per_second,
            ),
            locate=None if remote is None else remote.locate,
        )
        self.runtime, self.router = port.runtime, port.router
        commit = GroupCommit(
            storage,
            None if remote is None else remote.committed,
            None if remote is None else remote.expect,
        )
        self.intake = Intake(
            storage,
            options,
            max_message_size=max_size,
            commit=commit,
            router=port.router,
            replies=replies,
            history=history,
            letters=letters,
            spans=getattr(port.runtime, "spans", None),
        )
        self.bulk = BulkIntake(
            options,
            max_message_size=max_size,
            commit=commit,
            router=port.router,
            replies=replies,
            history=history,
        )
        self.metrics = MessagingMetrics(
            port.runtime,
            history=history,
            letters=letters,
            router=port.router,
            replies=replies,
            bus=bus,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the flush and retention tasks; note where recovery stops."""
        self.history.start()
        await self.intake.mark_recoverable()
        self._tasks.service(self._flush_loop(), "caxton-messaging-flush")
        self._tasks.service(self._prune_loop(), "caxton-messaging-prune")

    async def aclose(self) -> None:
        """Stop the tasks, write the journal and wait for the commits (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._tasks.drain()  # the loops stop; the dead letters are written
        await asyncio.to_thread(self.journal.wait_committed, 30.0)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.flush_interval)
            if len(self.journal):
                # Deferred: while a batch is uncommitted its commit flushes what waits, so the
                # timer never queues batches behind a busy writer (that would drain the deque
                # before the workers' flushes could block on it: no backpressure, and an API
                # commit waiting seconds behind the queue).
                self.journal.flush(block=False, defer=True)

    async def _prune_loop(self) -> None:
        """Prune every ``prune_interval``, and as soon as a quarter of ``max_history`` (or of
        ``max_history_bytes``, or of ``max_dead_letters``) came in since the last time: a flood
        cannot outgrow the budget by a minute of traffic (checked once a second; counters
        only)."""
        options = self.options
        loop = asyncio.get_running_loop()
        last, mark = loop.time(), self.history.prune_mark()
        while True:
            await asyncio.sleep(min(1.0, options.prune_interval))
            now = self.history.prune_mark()
            history, letters, size = now
            due = loop.time() - last >= options.prune_interval
            if (
                due
                or history - mark[0] >= max(1, options.max_history // 4)
                or letters - mark[1] >= max(1, options.max_dead_letters // 4)
                or size - mark[2] >= max(1, options.max_history_bytes // 4)
            ):
                await self.prune()
                last, mark = loop.time(), now

    async def prune(self) -> tuple[int, int]:
        """Enforce ``max_history``, ``max_history_bytes`` and ``max_dead_letters`` now:
        (chunks, dead letters) dropped."""
        return await self.history.prune()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._tasks.start(coro, "caxton-dead-letter")

    # -- events ------------------------------------------------------------------------------

    def publish(self, event: dict[str, Any]) -> None:
        """Publish an event (lifecycle events from the node) to the subscribers."""
        self.bus.publish(event)

    def subscribe(
        self,
        *,
        agent: str | None = None,
        performative: str | None = None,
        conversation: str | None = None,
        max_queue: int = 1000,
    ) -> Subscription:
        """A live, filtered stream of events (see `bus`); close it when done."""
        return self.bus.subscribe(
            agent=agent, performative=performative, conversation=conversation, max_queue=max_queue
        )

    # -- submitting --------------------------------------------------------------------------

    async def submit(
        self,
        message: Mapping[str, Any] | bytes,
        *,
        client: str | None = None,
        wait: bool = False,
        traceparent: str | None = None,
    ) -> Accepted:
        """Validate, commit and route a message from an API client.

        The sender is ``client`` (else the message's ``sender``, else a made-up
        ``client-<hex>``); it must not be an agent's name. Returns once the message is
        committed and queued. Raises `InvalidMessage`, `MessageTooLarge`, or `WouldBlock` when
        a receiver's mailbox stayed full for ``submit_wait`` (the message is then
        dead-lettered with reason ``mailbox_full``; ``details`` has its ids).
        ``traceparent`` (a sampled W3C context, with tracing on) becomes the message's
        ``traceparent`` field: the spans of its handling continue that trace.
        """
        return await self.intake.submit(message, client=client, wait=wait, traceparent=traceparent)

    async def submit_many(
        self,
        messages: Sequence[Mapping[str, Any] | bytes],
        *,
        client: str | None = None,
        traceparent: str | None = None,
    ) -> list[Accepted | Error]:
        """Validate, commit and route many messages from one API client; one result each
        (see `bulk`). ``traceparent``: as `submit`'s, for every message."""
        return await self.bulk.submit_many(messages, client=client, traceparent=traceparent)

    # -- history, dead letters and recovery --------------------------------------------------

    async def conversation(
        self, conversation_id: str, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[dict[str, Any]], int]:
        """The conversation's messages in order (a page) and their total number."""
        return await self.history.conversation(conversation_id, offset=offset, limit=limit)

    async def dead_letters(
        self, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[dl.DeadLetter], int]:
        """A page of dead letters (oldest first) and the total."""
        return await self.letters.page(offset=offset, limit=limit)

    async def redrive(self, dead_letter_id: int) -> Accepted:
        """Submit a dead letter's message again (same ids) to its receiver; mark it redriven.

        Raises `InvalidMessage` if there is no such dead letter or it was redriven already.
        """
        return await self.intake.redrive(dead_letter_id)

    async def recover(self) -> int:
        """Deliver again every delivery a previous run accepted and did not finish.

        Call it after the agents are started. Returns how many were delivered; expired ones,
        and ones whose agent is gone or stays full, are dead-lettered. Recovered deliveries
        go ahead of what agents send meanwhile (`Runtime.deliver_recovered`); past that, a
        mailbox gets ``recover_wait`` once: the rest for a receiver that stayed full is
        dead-lettered without waiting again, so a busy agent cannot hold the start up.
        """
        return await self.intake.recover()

    # -- counters ----------------------------------------------------------------------------

    @property
    def dead_letter_counts(self) -> dict[str, int]:
        """Dead letters stored since start, by reason."""
        return self.letters.counts

    @property
    def dead_letters_expired(self) -> int:
        """The oldest dead letters deleted beyond ``max_dead_letters``."""
        return self.letters.expired

    def statistics(self) -> MessagingStatistics:
        """A frozen snapshot of the counters."""
        return self.metrics.statistics()

    def metric_samples(self) -> Iterator[tuple[str, str, dict[str, str], Any, str]]:
        """Samples for a snapshot collector (see `metrics`)."""
        return self.metrics.metric_samples()
