"""Intake: messages from API clients, validated, committed, then routed; redrive; recovery.

`Intake.submit` validates and stamps one message, commits it (history row and a pending row
per local receiver) before it returns, then routes it (`Router.route_nowait`). `Intake.redrive`
submits a dead letter's message again, `Intake.recover` delivers again what a previous run
accepted and did not finish. Bulk submit is `bulk.BulkIntake`; both commit through
`GroupCommit`.

--- Group commit

Every `submit` must be committed before it returns, but one storage op per submit costs a
cross-thread future, a loop wake-up and a SAVEPOINT each (~3k submits/s). Instead, the submits
that reach `GroupCommit.commit` in the same event-loop iteration share ONE `MessageBatch` (one
write op, one commit, one hop back to the loop): the first one schedules the write with
``call_soon``, the others append to its batch. With many concurrent clients, all those resumed
by one commit land in the next group.

Safety: each submitter awaits its own loop future (cancelling one submitter cancels only its
wait, never the shared write); a commit failure fails every submit of the group (a merged
batch cannot fail one message alone, but its rows are plain inserts that only fail together:
disk full, I/O error, closed store). Nothing is routed before its commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from time import time_ns
from typing import Any

from caxton.errors import InvalidMessage, WouldBlock
from caxton.messaging.deadletters import DeadLetters, Reason
from caxton.messaging.history import History
from caxton.messaging.options import MessagingOptions
from caxton.messaging.replies import Replies, ReplyWaiter
from caxton.messaging.routing import Router
from caxton.runtime.tracing import SpanLog
from caxton.storage.messages import MessageBatch
from caxton.storage.outbox import OutboxEntry
from caxton.storage.sqlite import Storage
from caxton.wire.codec import check_name, check_size, encode, parse_message
from caxton.wire.envelope import new_id, now_rfc3339
from caxton.wire.header import Header, expired, header_from, header_of
from caxton.wire.trace import HEAD as _HEAD

__all__ = ["Accepted", "GroupCommit", "Intake", "refused"]

_HEAD_LEN = len(_HEAD)


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


def refused(
    router: Router, receiver: str, data: bytes, header: Header, reason: Reason
) -> Coroutine[Any, Any, int]:
    """Dead-letter a delivery an API client submitted (or redrove) that the rule refused.

    An expired message had no pending row written (nothing to mark done); a full mailbox
    sends no `failure` (the client gets the error instead).
    """
    notify = reason is not Reason.MAILBOX_FULL
    pending = reason is not Reason.EXPIRED
    return router.dead_letter(receiver, data, header, reason, notify=notify, pending=pending)


class GroupCommit:
    """One storage write per event-loop iteration for the submits in it (module docstring)."""

    def __init__(
        self,
        storage: Storage,
        outboxed: Callable[[list[OutboxEntry]], None] | None = None,
        expect: Callable[[list[tuple[str, str, str, bytes]]], None] | None = None,
    ) -> None:
        """``outboxed``: called (on the loop) with the outbox rows a group write added;
        ``expect``: with the outbox rows a group write is about to add (`Remote.expect`)."""
        self._storage = storage
        self._outboxed = outboxed
        self._expect = expect
        self._group: tuple[MessageBatch, list[asyncio.Future[None]]] | None = None

    def commit(self, batch: MessageBatch) -> asyncio.Future[None]:
        """Join ``batch`` to this loop iteration's group write; a future of its commit."""
        loop = asyncio.get_running_loop()
        group = self._group
        if group is None:
            group = self._group = (MessageBatch(), [])
            loop.call_soon(self._write_group)
        merged, futures = group
        merged.chunks.extend(batch.chunks)
        merged.pending.extend(batch.pending)
        merged.outbox.extend(batch.outbox)  # messages for other nodes (storage/outbox.py)
        future: asyncio.Future[None] = loop.create_future()
        futures.append(future)
        return future

    def _write_group(self) -> None:
        group, self._group = self._group, None
        if group is None:  # pragma: no cover - scheduled once per group
            return
        merged, futures = group
        if merged.outbox and self._expect is not None:
            self._expect(merged.outbox)
        try:
            written = asyncio.wrap_future(self._storage.messages.write_nowait(merged))
        except BaseException as exc:  # the store is closed: fail the whole group
            _settle(futures, exc)
            return
        written.add_done_callback(lambda done: self._written(merged, futures, done))

    def _written(
        self,
        merged: MessageBatch,
        futures: list[asyncio.Future[None]],
        done: asyncio.Future[None],
    ) -> None:
        error = done.exception()
        if error is None and merged.enqueued and self._outboxed is not None:
            self._outboxed(merged.enqueued)  # before the submitters resume: sent soon
        _settle(futures, error)


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    """Resolve the submitters' futures of one group write (skipping cancelled ones)."""
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class Intake:
    """Single messages from API clients, redrive and recovery (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        options: MessagingOptions,
        *,
        max_message_size: int,
        commit: GroupCommit,
        router: Router,
        replies: Replies,
        history: History,
        letters: DeadLetters,
        spans: SpanLog | None = None,
    ) -> None:
        self._storage = storage
        self._spans = spans
        self._options = options
        self._max_size = max_message_size
        self._commit = commit
        self._router = router
        self._replies = replies
        self._history = history
        self._letters = letters
        self._recover_upto = 0

    async def submit(
        self,
        message: Mapping[str, Any] | bytes,
        *,
        client: str | None = None,
        wait: bool = False,
        traceparent: str | None = None,
    ) -> Accepted:
        """`Messaging.submit`."""
        body = parse_message(message, max_size=self._max_size)
        body.pop("traceparent", None)  # the runtime's field, like ``message_id``
        if client:
            sender = check_name("sender", client)
        else:  # the body's sender was validated by parse_message; a made-up one is valid
            # new_id (random per-process prefix + counter), not secrets.token_hex: urandom
            # cost ~80 µs a call on this kind of VM, more than the rest of a submit.
            sender = body.get("sender") or f"client-{new_id()}"
        if self._router.is_local(sender):
            raise InvalidMessage(
                f"sender: {sender!r} is an agent's name; API clients need another name",
                details={"field": "sender"},
            )
        envelope: dict[str, Any] = {
            "sender": sender,
            "message_id": new_id(),
            "created_at": now_rfc3339(),
        }
        if traceparent is not None:  # first, where `caxton.wire.trace` looks for it
            envelope = {"traceparent": traceparent, **envelope}
        for key, value in body.items():
            envelope.setdefault(key, value)
        envelope.setdefault("conversation_id", new_id())
        data = encode(envelope)
        # Validated once: the body passed `parse_message`, and the runtime's own fields are
        # well-formed by construction, so only the size with our fields is left to check (a
        # second full parse of ``data`` cost ~15 µs per submit and could find nothing new).
        check_size(data, self._max_size)
        header = header_from(envelope)
        self._replies.remember(sender)
        waiter = self._replies.expect(envelope["conversation_id"], sender) if wait else None
        try:
            return await self.accept(data, header, waiter)
        except BaseException:
            if waiter is not None:
                waiter.close()
            raise

    async def accept(
        self,
        data: bytes,
        header: Header,
        waiter: ReplyWaiter | None,
        *,
        redrive: int | None = None,
        receivers: tuple[str, ...] | None = None,
    ) -> Accepted:
        """Commit one stamped message (with dead letter ``redrive`` marked redriven), then
        route it to ``receivers`` (default: the header's)."""
        router = self._router
        if receivers is None:
            raw = header.receiver
            receivers = tuple(raw) if isinstance(raw, list) else (raw,)
        mid, conversation = str(header.message_id), str(header.conversation_id)
        late = expired(header)
        local = router.local_receivers(receivers, late)
        # Receivers on other nodes: an outbox row committed with the message, not routed here.
        outbox = (
            [] if late or router.remote is None else router.outbox_rows(mid, receivers, local, data)
        )
        spans = self._spans
        traced = spans is not None and data[:_HEAD_LEN] == _HEAD
        started = time_ns() if traced else 0
        batch = MessageBatch(
            chunks=[(conversation, 1, b"[" + data + b"]")],
            pending=[(mid, r, data) for r in local],
            outbox=outbox,
        )
        if redrive is None:
            await self._commit.commit(batch)
        else:
            if outbox and router.remote is not None:  # not a group write
                router.remote.expect(outbox)
            if not await self._storage.messages.mark_redriven(redrive, batch):
                raise InvalidMessage(
                    f"dead letter {redrive} does not exist or was redriven already"
                )
        self._history.accepted([data])
        if traced:
            assert spans is not None
            spans.step("caxton.commit", data, started, {"messaging.message.id": mid})
            started = time_ns()
        full: list[str] = []
        wait = self._options.submit_wait
        if outbox:
            if redrive is not None and router.remote is not None:  # not a group write
                router.remote.committed(batch.enqueued)
            forwarded = {row[2] for row in outbox}
            receivers_here = tuple(r for r in receivers if r not in forwarded)
        else:
            receivers_here = receivers
        for receiver in receivers_here:
            # No coroutine unless the mailbox is full (the usual submit queues at once).
            reason = router.route_nowait(receiver, data, local=receiver in local, late=late)
            if reason is Reason.MAILBOX_FULL:
                reason = await router.wait_for_room(receiver, data, wait)
            if reason is None:
                continue
            if reason is Reason.MAILBOX_FULL:
                full.append(receiver)
            await refused(router, receiver, data, header, reason)
        if traced:
            assert spans is not None
            spans.step(
                "caxton.route",
                data,
                started,
                {
                    "messaging.message.id": mid,
                    "messaging.destination.name": ",".join(receivers),
                    "caxton.forwarded": len(outbox),
                },
            )
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

    async def redrive(self, dead_letter_id: int) -> Accepted:
        """`Messaging.redrive`."""
        record = await self._letters.find(dead_letter_id)
        if record is None or record.redriven_at is not None:
            raise InvalidMessage(f"dead letter {dead_letter_id} does not exist or was redriven")
        header = header_of(record.body)
        if header.reply_by is not None and expired(header):
            header.reply_by = None  # a redrive is a deliberate second chance
        return await self.accept(
            record.body, header, None, redrive=dead_letter_id, receivers=(record.receiver,)
        )

    # -- recovery after a restart ------------------------------------------------------------

    async def mark_recoverable(self) -> None:
        """Note where `recover` stops: the deliveries pending before this run started."""
        self._recover_upto = int(
            await self._storage.read(
                lambda c: c.fetch_value("SELECT COALESCE(MAX(seq), 0) FROM pending_deliveries")
            )
        )

    async def recover(self) -> int:
        """`Messaging.recover`."""
        router, count, after = self._router, 0, 0
        #: Receivers that stayed full once: the rest of their deliveries does not wait again.
        full: set[str] = set()
        while True:
            rows = await self._storage.messages.pending(after=after, limit=1000)
            rows = [r for r in rows if r.seq <= self._recover_upto]
            if not rows:
                return count
            for row in rows:
                after = row.seq
                header = header_of(row.body)
                wait = None if row.receiver in full else self._options.recover_wait
                reason = await router.route(
                    row.receiver,
                    row.body,
                    local=True,  # it was accepted for an agent of this node
                    late=expired(header),
                    wait=wait,
                    recovered=True,
                )
                if reason is None:
                    count += 1
                    continue
                if reason is Reason.MAILBOX_FULL:
                    full.add(row.receiver)
                await router.dead_letter(
                    row.receiver, row.body, header, reason, notify=True, pending=True
                )
