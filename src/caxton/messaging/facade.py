"""`Messaging`: the messaging layer's facade for the node and the API.

Composition (the node does this)::

    messaging = Messaging(
        config,
        storage,
        # The runtime gets its `Delivery` port (this object) at construction; node_events
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

Durability: `submit` commits before it returns; agent-to-agent messages go through the
`journal` (see there for the exact guarantee). Everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from caxton.config.schema import Config
from caxton.errors import (
    AgentFailure,
    AgentNotFound,
    Error,
    InvalidMessage,
    MailboxClosed,
    MessageTooLarge,
    WouldBlock,
)
from caxton.messaging import deadletters as dl
from caxton.messaging.bus import EventBus, Subscription
from caxton.messaging.deadletters import Reason
from caxton.messaging.failures import FailureOps
from caxton.messaging.journal import Journal
from caxton.messaging.metrics import MetricsMixin
from caxton.messaging.options import MessagingOptions
from caxton.messaging.replies import Replies, ReplyWaiter
from caxton.messaging.routing import MessagingRouter, to_mailbox
from caxton.runtime.agent import AgentState
from caxton.runtime.delivery import Origin
from caxton.storage.messages import MessageBatch
from caxton.storage.sqlite import Storage
from caxton.tasks import TaskSet
from caxton.wire.codec import check_name, check_size, decode_array, encode, parse_message
from caxton.wire.envelope import new_id, now_rfc3339
from caxton.wire.header import Header, expired, header_from, header_of

if TYPE_CHECKING:
    from caxton.runtime.runtime import Runtime

__all__ = ["Accepted", "Messaging"]

#: One message of a `Messaging.submit_many` once stamped: (data, envelope, receivers, local
#: receivers, expired).
_Entry = tuple[bytes, dict[str, Any], tuple[str, ...], tuple[str, ...], bool]


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """A message `submit` committed: its ids, sender and receivers.

    ``reply`` is the waiter `submit(..., wait=True)` registered before routing; call
    ``await accepted.reply.wait(timeout)`` (it unregisters itself) or ``reply.close()``.
    """

    message_id: str
    conversation_id: str
    sender: str
    receivers: tuple[str, ...]
    reply: ReplyWaiter | None = None


class Messaging(FailureOps, MetricsMixin):
    """Routing, conversations, at-least-once delivery, dead letters and the event bus."""

    def __init__(
        self,
        config: Config,
        storage: Storage,
        *,
        runtime: Callable[[Messaging], Runtime],
        options: MessagingOptions | None = None,
        forward: Callable[[str, bytes], bool] | None = None,
    ) -> None:
        """``runtime`` builds the runtime around this object, its `Delivery` port;
        ``forward(receiver, data)`` (the cluster's hook) may take messages for names that are
        neither local agents nor known clients (True: it took it)."""
        self.config = config
        self.storage = storage
        self.options = options or MessagingOptions()
        self.max_message_size = config.runtime.max_message_size
        self.journal = Journal(storage.messages.write_nowait)
        self.replies = Replies(self.options.max_clients)
        self.bus = EventBus()
        self.runtime = runtime(self)
        self.router = MessagingRouter(
            self.runtime,
            self.replies,
            self._dead_letter_soon,
            forward=forward,
            dead_letters_per_second=config.runtime.max_dead_letters_per_second,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The flush and prune loops, and the dead letters being written.
        self._tasks = TaskSet("messaging")
        self._recover_upto = 0
        self._closed = False
        #: The submits of this loop iteration waiting for one group write (see `_commit`).
        self._group: tuple[MessageBatch, list[asyncio.Future[None]]] | None = None
        self.submitted = 0
        self.dead_letter_counts = dict.fromkeys(dl.REASONS, 0)
        #: The oldest dead letters deleted beyond ``max_dead_letters``.
        self.dead_letters_expired = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the flush and retention tasks; note where recovery stops."""
        self._loop = asyncio.get_running_loop()
        self.journal.listener = self._on_flush
        self._recover_upto = int(
            await self.storage.read(
                lambda c: c.fetch_value("SELECT COALESCE(MAX(seq), 0) FROM pending_deliveries")
            )
        )
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
                self.journal.flush(block=False)

    async def _prune_loop(self) -> None:
        """Prune every ``prune_interval``, and as soon as a quarter of ``max_history`` (or of
        ``max_history_bytes``, or of ``max_dead_letters``) came in since the last time: a flood
        cannot outgrow the budget by a minute of traffic (checked once a second; counters
        only)."""
        options = self.options
        loop = asyncio.get_running_loop()
        last, mark = loop.time(), self._prune_mark()
        while True:
            await asyncio.sleep(min(1.0, options.prune_interval))
            now = self._prune_mark()
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

    def _prune_mark(self) -> tuple[int, int, int]:
        """Messages recorded, dead letters counted, and bytes agents sent since start."""
        return (
            self.submitted + self.journal.sent_total,
            sum(self.dead_letter_counts.values()),
            self.journal.sent_bytes,
        )

    async def prune(self) -> tuple[int, int]:
        """Enforce ``max_history``, ``max_history_bytes`` and ``max_dead_letters`` now:
        (chunks, dead letters) dropped."""
        dropped = await self.storage.messages.prune(
            max_history=self.options.max_history,
            max_history_bytes=self.options.max_history_bytes,
            max_dead_letters=self.options.max_dead_letters,
        )
        self.dead_letters_expired += dropped[1]
        return dropped

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._tasks.start(coro, "caxton-dead-letter")

    def _on_flush(self, sent: list[bytes]) -> None:
        if len(self.bus) and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.call_soon_threadsafe(self.bus.publish_messages, sent)

    # -- Delivery: the runtime's port ---------------------------------------------------------

    def not_local(self, receiver: str, data: bytes, origin: Origin) -> None:
        """A message no running local agent takes (loop thread): see `MessagingRouter`."""
        self.router.not_local(receiver, data, origin)

    # -- AgentEvents (the node forwards these) -----------------------------------------------

    def message_failed(self, name: str, data: bytes, error: AgentFailure) -> None:
        """A handler failed: dead-letter the message (reason ``handler_failed``)."""
        details = {"cause": error.cause, "error": error.message}
        reason = Reason.HANDLER_FAILED
        self._dead_letter_soon(
            name, data, header_of(data), reason, details, notify=True, pending=True
        )

    def agent_state_changed(self, name: str, state: AgentState) -> None:
        """Publish a lifecycle event."""
        self.publish({"type": "agent", "name": name, "state": state.value})

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

    def _is_agent(self, name: str) -> bool:
        return self.runtime.has_agent(name)  # a dict lookup (no statistics snapshot)

    async def submit(
        self, message: Mapping[str, Any] | bytes, *, client: str | None = None, wait: bool = False
    ) -> Accepted:
        """Validate, commit and route a message from an API client.

        The sender is ``client`` (else the message's ``sender``, else a made-up
        ``client-<hex>``); it must not be an agent's name. Returns once the message is
        committed and queued. Raises `InvalidMessage`, `MessageTooLarge`, or `WouldBlock` when
        a receiver's mailbox stayed full for ``submit_wait`` (the message is then
        dead-lettered with reason ``mailbox_full``; ``details`` has its ids).
        """
        body = parse_message(message, max_size=self.max_message_size)
        if client:
            sender = check_name("sender", client)
        else:  # the body's sender was validated by parse_message; a made-up one is valid
            # new_id (random per-process prefix + counter), not secrets.token_hex: urandom
            # cost ~80 µs a call on this kind of VM, more than the rest of a submit.
            sender = body.get("sender") or f"client-{new_id()}"
        if self._is_agent(sender):
            raise InvalidMessage(
                f"sender: {sender!r} is an agent's name; API clients need another name",
                details={"field": "sender"},
            )
        envelope: dict[str, Any] = {
            "sender": sender,
            "message_id": new_id(),
            "created_at": now_rfc3339(),
        }
        for key, value in body.items():
            envelope.setdefault(key, value)
        envelope.setdefault("conversation_id", new_id())
        data = encode(envelope)
        # Validated once: the body passed `parse_message`, and the runtime's own fields are
        # well-formed by construction, so only the size with our fields is left to check (a
        # second full parse of ``data`` cost ~15 µs per submit and could find nothing new).
        check_size(data, self.max_message_size)
        header = header_from(envelope)
        self.replies.remember(sender)
        waiter = self.replies.expect(envelope["conversation_id"], sender) if wait else None
        try:
            return await self._accept(data, header, waiter)
        except BaseException:
            if waiter is not None:
                waiter.close()
            raise

    async def submit_many(
        self, messages: Sequence[Mapping[str, Any] | bytes], *, client: str | None = None
    ) -> list[Accepted | Error]:
        """Validate, commit and route many messages from one API client; one result each.

        All or nothing up to the commit: every message is validated (once) before anything is
        stored, and the first invalid one raises its `InvalidMessage` / `MessageTooLarge`
        with ``details["index"]`` and a ``message N:`` prefix; nothing is accepted then. The
        valid batch is committed in ONE storage write (joined to this loop iteration's group,
        see `_commit`), then routed in order. The result at index ``i`` is the `Accepted` of
        ``messages[i]``, or the `WouldBlock` `submit` would have raised for it (a receiver's
        mailbox stayed full for ``submit_wait``: dead-lettered ``mailbox_full``, committed).

        The sender is ``client``, else the message's ``sender``, else ONE made-up
        ``client-<hex>`` shared by the call's messages without a sender (one request is one
        client; a made-up name per message would also evict real clients from `replies`).
        """
        runtime = self.runtime
        has_agent = runtime.has_agent
        max_size = self.max_message_size
        sender_of_call = check_name("sender", client) if client else None
        made_up: str | None = None
        # One timestamp for the batch (one clock read and format instead of one per message):
        # the whole batch is accepted by one commit, so one `created_at` is as true for each of
        # its messages as a per-message reading; nothing orders by it (a conversation's order
        # is its chunk ids, then array order), and the format is the one `submit` writes.
        now = now_rfc3339()
        #: Senders checked not to be an agent's name (checked once per distinct sender).
        senders: dict[str, None] = {}
        entries: list[_Entry] = []
        chunks: dict[str, list[bytes]] = {}
        pending: list[tuple[str, str, bytes]] = []
        for index, message in enumerate(messages):
            try:
                body = parse_message(message, max_size=max_size)
                sender = sender_of_call or body.get("sender")
                if not sender:
                    sender = made_up = made_up or f"client-{new_id()}"
                if sender not in senders:
                    if has_agent(sender):
                        raise InvalidMessage(
                            f"sender: {sender!r} is an agent's name; API clients need another name",
                            details={"field": "sender"},
                        )
                    senders[sender] = None
                mid = new_id()
                # The same dict as `submit`'s setdefault loop, built in one step: our three
                # fields come first, then the body's fields in order; a body that carried
                # ``sender``, ``message_id`` or ``created_at`` overwrote ours in the splat, and
                # re-storing ours puts our values back without moving the keys.
                envelope: dict[str, Any] = {
                    "sender": sender,
                    "message_id": mid,
                    "created_at": now,
                    **body,
                }
                envelope["sender"] = sender
                envelope["message_id"] = mid
                envelope["created_at"] = now
                conversation = body.get("conversation_id")  # a str: parse_message dropped None
                if conversation is None:
                    conversation = envelope["conversation_id"] = new_id()
                data = encode(envelope)
                # As in `submit`: only the size with the runtime's fields is left to check.
                check_size(data, max_size)
            except (InvalidMessage, MessageTooLarge) as exc:
                exc.details = {**exc.details, "index": index}
                exc.message = f"message {index}: {exc.message}"
                raise
            raw = envelope["receiver"]
            # `reply_by` is rare: only then build the header `expired` reads.
            late = "reply_by" in envelope and expired(header_from(envelope))
            if isinstance(raw, str):  # the usual case: one receiver, no generator to run
                receivers: tuple[str, ...] = (raw,)
                local: tuple[str, ...] = () if late or not has_agent(raw) else receivers
                if local:
                    pending.append((mid, raw, data))
            else:
                receivers = tuple(raw)
                local = () if late else tuple(r for r in receivers if has_agent(r))
                pending.extend((mid, r, data) for r in local)
            entries.append((data, envelope, receivers, local, late))
            datas = chunks.get(conversation)
            if datas is None:
                chunks[conversation] = [data]
            else:
                datas.append(data)
        for sender in senders:  # before routing: a quick reply must find its client known
            self.replies.remember(sender)
        # One history row per conversation of the batch: a conversation is read in chunk id
        # order, then array order, and its messages are joined here in submission order, so
        # its order is the order of ``messages`` (other conversations' order is independent).
        batch = MessageBatch(
            chunks=[
                (conv, len(datas), b"[" + b",".join(datas) + b"]") for conv, datas in chunks.items()
            ],
            pending=pending,
        )
        await self._commit(batch)  # one write, one future for the whole call
        self.submitted += len(entries)
        if len(self.bus):  # no list to build while nobody is subscribed
            self.bus.publish_messages([entry[0] for entry in entries])
        return await self._route_many(runtime, entries)

    async def _route_many(
        self,
        runtime: Runtime,
        entries: list[_Entry],
    ) -> list[Accepted | Error]:
        """Route committed messages in order: `deliver_nowait` first, then the slow path."""
        deliver_nowait = runtime.deliver_nowait
        not_local = self.router.not_local
        #: Receivers whose mailbox was full in this call: every later message to one of them
        #: takes the slow path too, behind the earlier ones, so one sender's messages to one
        #: receiver still arrive in the order sent (a freed slot must not let message i+1
        #: overtake message i that is waiting for room).
        blocked: set[str] = set()
        #: (index, receiver, reason): deliveries left for the slow path, in order.
        slow: list[tuple[int, str, Reason]] = []
        for index, (data, _, receivers, local, late) in enumerate(entries):
            for receiver in receivers:
                if late:
                    slow.append((index, receiver, Reason.EXPIRED))
                elif receiver not in local:
                    not_local(receiver, data, Origin.LOOP)
                elif receiver in blocked:
                    slow.append((index, receiver, Reason.MAILBOX_FULL))
                else:
                    # `to_mailbox` without waiting, inlined: no coroutine per message.
                    try:
                        deliver_nowait(receiver, data)
                    except WouldBlock:
                        blocked.add(receiver)
                        slow.append((index, receiver, Reason.MAILBOX_FULL))
                    except (MailboxClosed, AgentNotFound):
                        slow.append((index, receiver, Reason.AGENT_NOT_RUNNING))
        full: dict[int, list[str]] = {}
        if slow:
            await self._route_slow(runtime, entries, slow, full)
        results: list[Accepted | Error] = []
        for index, (_, envelope, receivers, _, _) in enumerate(entries):
            mid, conversation = envelope["message_id"], envelope["conversation_id"]
            stuck = full.get(index)
            if stuck:
                results.append(
                    WouldBlock(
                        f"the mailbox of {', '.join(stuck)} stayed full; the message was"
                        " dead-lettered",
                        details={
                            "message_id": mid,
                            "conversation_id": conversation,
                            "receivers": stuck,
                        },
                    )
                )
            else:
                results.append(
                    Accepted(
                        message_id=mid,
                        conversation_id=conversation,
                        sender=envelope["sender"],
                        receivers=receivers,
                    )
                )
        return results

    async def _route_slow(
        self,
        runtime: Runtime,
        entries: list[_Entry],
        slow: list[tuple[int, str, Reason]],
        full: dict[int, list[str]],
    ) -> None:
        """Full mailboxes, stopped agents and expired messages of a `submit_many`, in order.

        One deadline for the call (``submit_wait`` from now), not one per message: concurrent
        `submit` calls would all wait that long at the same time, so the call as a whole waits
        no longer than they would; once it has passed, each full mailbox gets one more try.
        Deliveries stay sequential (one sender's order per receiver); the dead letters are
        written together at the end (the only tasks of `submit_many`, one per dead letter on
        this rare path, so they share group commits instead of one writer round trip each),
        and before returning, as `submit` stores its dead letter before raising.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.submit_wait
        letters: list[Coroutine[Any, Any, int]] = []
        for index, receiver, why in slow:
            data, envelope = entries[index][0], entries[index][1]
            reason: Reason | None = why
            if why is Reason.MAILBOX_FULL:
                wait = max(deadline - loop.time(), 0.0)
                reason = await to_mailbox(runtime, receiver, data, wait=wait)
                if reason is None:
                    continue
                if reason is Reason.MAILBOX_FULL:
                    full.setdefault(index, []).append(receiver)
            assert reason is not None
            letters.append(self._api_dead_letter(receiver, data, header_from(envelope), reason))
        if letters:
            await asyncio.gather(*letters)

    # -- group commit of accepted messages ---------------------------------------------------
    #
    # Every `submit` must be committed before it returns, but one storage op per submit costs a
    # cross-thread future, a loop wake-up and a SAVEPOINT each (~3k submits/s). Instead, the
    # submits that reach `_commit` in the same event-loop iteration share ONE `MessageBatch`
    # (one write op, one commit, one hop back to the loop): the first one schedules
    # `_write_group` with ``call_soon``, the others append to its batch. With many concurrent
    # clients, all those resumed by one commit land in the next group.
    #
    # Safety: each submitter awaits its own loop future (cancelling one submitter cancels only
    # its wait, never the shared write); a commit failure fails every submit of the group (a
    # merged batch cannot fail one message alone, but its rows are plain inserts that only fail
    # together: disk full, I/O error, closed store). Nothing is routed before its commit.

    def _commit(self, batch: MessageBatch) -> asyncio.Future[None]:
        """Join ``batch`` to this loop iteration's group write; a future of its commit."""
        loop = asyncio.get_running_loop()
        group = self._group
        if group is None:
            group = self._group = (MessageBatch(), [])
            loop.call_soon(self._write_group)
        merged, futures = group
        merged.chunks.extend(batch.chunks)
        merged.pending.extend(batch.pending)
        future: asyncio.Future[None] = loop.create_future()
        futures.append(future)
        return future

    def _write_group(self) -> None:
        group, self._group = self._group, None
        if group is None:  # pragma: no cover - scheduled once per group
            return
        merged, futures = group
        try:
            written = asyncio.wrap_future(self.storage.messages.write_nowait(merged))
        except BaseException as exc:  # the store is closed: fail the whole group
            _settle(futures, exc)
            return
        written.add_done_callback(lambda done: _settle(futures, done.exception()))

    async def _accept(
        self,
        data: bytes,
        header: Header,
        waiter: ReplyWaiter | None,
        *,
        redrive: int | None = None,
        receivers: tuple[str, ...] | None = None,
    ) -> Accepted:
        runtime = self.runtime
        if receivers is None:
            raw = header.receiver
            receivers = tuple(raw) if isinstance(raw, list) else (raw,)
        mid, conversation = str(header.message_id), str(header.conversation_id)
        late = expired(header)
        local = () if late else tuple(r for r in receivers if self._is_agent(r))
        batch = MessageBatch(
            chunks=[(conversation, 1, b"[" + data + b"]")],
            pending=[(mid, r, data) for r in local],
        )
        if redrive is None:
            await self._commit(batch)
        elif not await self.storage.messages.mark_redriven(redrive, batch):
            raise InvalidMessage(f"dead letter {redrive} does not exist or was redriven already")
        self.submitted += 1
        self.bus.publish_messages([data])
        full: list[str] = []
        for receiver in receivers:
            reason: Reason | None
            if late:
                reason = Reason.EXPIRED
            elif receiver not in local:
                self.router.not_local(receiver, data, Origin.LOOP)
                continue
            else:
                wait = self.options.submit_wait
                reason = await to_mailbox(runtime, receiver, data, wait=wait)
                if reason is None:
                    continue
                if reason is Reason.MAILBOX_FULL:
                    full.append(receiver)
            await self._api_dead_letter(receiver, data, header, reason)
        if full:
            raise WouldBlock(
                f"the mailbox of {', '.join(full)} stayed full; the message was dead-lettered",
                details={"message_id": mid, "conversation_id": conversation, "receivers": full},
            )
        return Accepted(
            message_id=mid,
            conversation_id=conversation,
            sender=str(header.sender),
            receivers=receivers,
            reply=waiter,
        )

    def _api_dead_letter(
        self, receiver: str, data: bytes, header: Header, reason: Reason
    ) -> Coroutine[Any, Any, int]:
        """Dead-letter a delivery an API client submitted (or redrove).

        An expired message had no pending row written (nothing to mark done); a full mailbox
        sends no `failure` (the client gets the error instead).
        """
        notify = reason is not Reason.MAILBOX_FULL
        pending = reason is not Reason.EXPIRED
        return self._dead_letter(receiver, data, header, reason, notify=notify, pending=pending)

    # -- history and recovery ----------------------------------------------------------------

    async def conversation(
        self, conversation_id: str, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[dict[str, Any]], int]:
        """The conversation's messages in order (a page) and their total number."""
        flushed = self.journal.flush(block=False)
        if flushed is not None:
            await asyncio.wrap_future(flushed)
        await self.storage.write(lambda c: None)  # every earlier flush is committed now
        blobs, skip, total = await self.storage.messages.conversation(
            conversation_id, offset=offset, limit=limit
        )
        messages: list[dict[str, Any]] = []
        for blob in blobs:
            messages.extend(decode_array(blob))
        return messages[skip : skip + limit], total


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    """Resolve the submitters' futures of one group write (skipping cancelled ones)."""
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
