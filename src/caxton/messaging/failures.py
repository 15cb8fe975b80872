"""Dead letters, failure replies, redrive and recovery: the `Messaging` methods for failure.

Split from `facade` to keep each module to one idea; the reasons and the `failure` reply rule
are documented in `deadletters`, the delivery guarantee in `journal`.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from caxton.errors import InvalidMessage
from caxton.messaging import deadletters as dl
from caxton.messaging.bus import EventBus
from caxton.messaging.deadletters import Reason
from caxton.messaging.options import MessagingOptions
from caxton.messaging.replies import ReplyWaiter
from caxton.messaging.routing import MessagingRouter, to_mailbox
from caxton.storage.sqlite import Storage
from caxton.wire.header import Header, expired, header_of, message_id_of

if TYPE_CHECKING:
    from caxton.messaging.facade import Accepted
    from caxton.runtime.runtime import Runtime

__all__ = ["FailureOps"]


class FailureOps:
    """The failure half of `Messaging` (a mixin; see the facade for the attributes)."""

    storage: Storage
    options: MessagingOptions
    router: MessagingRouter
    bus: EventBus
    runtime: Runtime
    dead_letter_counts: dict[str, int]
    _recover_upto: int

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        raise NotImplementedError

    async def _accept(
        self,
        data: bytes,
        header: Header,
        waiter: ReplyWaiter | None,
        *,
        redrive: int | None = None,
        receivers: tuple[str, ...] | None = None,
    ) -> Accepted:
        raise NotImplementedError

    # -- dead letters ------------------------------------------------------------------------

    def _dead_letter_soon(
        self,
        receiver: str,
        data: bytes,
        header: Header,
        reason: Reason,
        details: dict[str, Any] | None = None,
        *,
        notify: bool,
        pending: bool,
    ) -> None:
        letter = self._dead_letter(
            receiver, data, header, reason, details, notify=notify, pending=pending
        )
        self._spawn(letter)

    async def _dead_letter(
        self,
        receiver: str,
        data: bytes,
        header: Header,
        reason: Reason,
        details: dict[str, Any] | None = None,
        *,
        notify: bool,
        pending: bool,
    ) -> int:
        """Store a dead letter and publish it. ``notify``: send the sender its `failure` reply
        (if it asked for one); ``pending``: mark the delivery's pending row done."""
        reason = Reason(reason)
        record = dl.record_for(receiver, data, header, reason.value, details or {})
        mid = message_id_of(data) if pending else None
        done = (mid, receiver) if mid is not None else None
        dead_id = await self.storage.messages.add_dead_letter(record, done=done)
        self.dead_letter_counts[reason.value] = self.dead_letter_counts.get(reason.value, 0) + 1
        self.bus.publish(
            {
                "type": "dead_letter",
                "id": dead_id,
                "reason": reason.value,
                "receiver": receiver,
                "sender": record.sender,
                "message_id": record.message_id,
                "conversation_id": record.conversation_id,
            }
        )
        reply = dl.failure_reply(receiver, header, reason.value) if notify else None
        if reply is not None:
            to, conversation, body = reply
            if self.runtime.send_from_loop(to, body, conversation):
                full = Reason.MAILBOX_FULL
                await self._dead_letter(
                    to, body, header_of(body), full, notify=False, pending=False
                )
        return dead_id

    async def dead_letters(
        self, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[dl.DeadLetter], int]:
        """A page of dead letters (oldest first) and the total."""
        records, total = await self.storage.messages.dead_letters(offset=offset, limit=limit)
        return [dl.from_record(r) for r in records], total

    async def redrive(self, dead_letter_id: int) -> Accepted:
        """Submit a dead letter's message again (same ids) to its receiver; mark it redriven.

        Raises `InvalidMessage` if there is no such dead letter or it was redriven already.
        """
        record = await self.storage.messages.dead_letter(dead_letter_id)
        if record is None or record.redriven_at is not None:
            raise InvalidMessage(f"dead letter {dead_letter_id} does not exist or was redriven")
        header = header_of(record.body)
        if header.reply_by is not None and expired(header):
            header.reply_by = None  # a redrive is a deliberate second chance
        return await self._accept(
            record.body, header, None, redrive=dead_letter_id, receivers=(record.receiver,)
        )

    async def recover(self) -> int:
        """Deliver again every delivery a previous run accepted and did not finish.

        Call it after the agents are started. Returns how many were delivered; expired ones,
        and ones whose agent is gone or stays full, are dead-lettered. Recovered deliveries
        go ahead of what agents send meanwhile (`Runtime.deliver_recovered`); past that, a
        mailbox gets ``recover_wait`` once: the rest for a receiver that stayed full is
        dead-lettered without waiting again, so a busy agent cannot hold the start up.
        """
        runtime, count, after = self.runtime, 0, 0
        #: Receivers that stayed full once: the rest of their deliveries does not wait again.
        full: set[str] = set()
        while True:
            rows = await self.storage.messages.pending(after=after, limit=1000)
            rows = [r for r in rows if r.seq <= self._recover_upto]
            if not rows:
                return count
            for row in rows:
                after = row.seq
                header = header_of(row.body)
                reason: Reason | None
                if expired(header):
                    reason = Reason.EXPIRED
                else:
                    wait = None if row.receiver in full else self.options.recover_wait
                    reason = await to_mailbox(
                        runtime, row.receiver, row.body, wait=wait, recovered=True
                    )
                if reason is None:
                    count += 1
                    continue
                if reason is Reason.MAILBOX_FULL:
                    full.add(row.receiver)
                await self._dead_letter(
                    row.receiver, row.body, header, reason, notify=True, pending=True
                )
