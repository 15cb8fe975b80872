"""Bulk submit: many messages from one API client, validated together, committed in one
write, routed in order (``POST /api/v1/messages`` with a JSON array).

All or nothing up to the commit: every message is validated (once) before anything is
stored, and the first invalid one raises its `InvalidMessage` / `MessageTooLarge` with
``details["index"]`` and a ``message N:`` prefix; nothing is accepted then. The valid batch is
committed in ONE storage write (joined to this loop iteration's group, see
`intake.GroupCommit`), then routed in order by the routing rule (`Router.route_nowait`, then
`Router.wait_for_room` for full mailboxes). The result at index ``i`` is the `Accepted` of
``messages[i]``, or the `WouldBlock` `submit` would have raised for it (a receiver's mailbox
stayed full for ``submit_wait``: dead-lettered ``mailbox_full``, committed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from caxton.errors import Error, InvalidMessage, MessageTooLarge, WouldBlock
from caxton.messaging.deadletters import Reason
from caxton.messaging.history import History
from caxton.messaging.intake import Accepted, GroupCommit, refused
from caxton.messaging.options import MessagingOptions
from caxton.messaging.replies import Replies
from caxton.messaging.routing import Router
from caxton.storage.messages import MessageBatch
from caxton.wire.codec import check_name, check_size, encode, parse_message
from caxton.wire.envelope import new_id, now_rfc3339
from caxton.wire.header import expired, header_from

__all__ = ["BulkIntake"]

_NONE: frozenset[str] = frozenset()

#: One message of a bulk submit once stamped: (data, envelope, receivers, local receivers,
#: expired, receivers on other nodes).
_Entry = tuple[bytes, dict[str, Any], tuple[str, ...], tuple[str, ...], bool, frozenset[str]]


class BulkIntake:
    """`Messaging.submit_many` (see the module docstring)."""

    def __init__(
        self,
        options: MessagingOptions,
        *,
        max_message_size: int,
        commit: GroupCommit,
        router: Router,
        replies: Replies,
        history: History,
    ) -> None:
        self._options = options
        self._max_size = max_message_size
        self._commit = commit
        self._router = router
        self._replies = replies
        self._history = history

    async def submit_many(
        self,
        messages: Sequence[Mapping[str, Any] | bytes],
        *,
        client: str | None = None,
        traceparent: str | None = None,
    ) -> list[Accepted | Error]:
        """The sender is ``client``, else the message's ``sender``, else ONE made-up
        ``client-<hex>`` shared by the call's messages without a sender (one request is one
        client; a made-up name per message would also evict real clients from `replies`)."""
        router = self._router
        is_local, local_receivers = router.is_local, router.local_receivers
        max_size = self._max_size
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
        outbox: list[tuple[str, str, str, bytes]] = []
        for index, message in enumerate(messages):
            try:
                body = parse_message(message, max_size=max_size)
                body.pop("traceparent", None)  # the runtime's field, like ``message_id``
                sender = sender_of_call or body.get("sender")
                if not sender:
                    sender = made_up = made_up or f"client-{new_id()}"
                if sender not in senders:
                    if is_local(sender):
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
                if traceparent is not None:  # first, where `caxton.wire.trace` looks for it
                    envelope = {"traceparent": traceparent, **envelope}
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
            receivers: tuple[str, ...] = (raw,) if isinstance(raw, str) else tuple(raw)
            local = local_receivers(receivers, late)
            if len(local) == 1:  # the usual case: no generator to run
                pending.append((mid, local[0], data))
            elif local:
                pending.extend((mid, r, data) for r in local)
            remote: frozenset[str] = _NONE
            if router.remote is not None and not late:
                rows = router.outbox_rows(mid, receivers, local, data)
                if rows:
                    outbox.extend(rows)
                    remote = frozenset(row[2] for row in rows)
            entries.append((data, envelope, receivers, local, late, remote))
            datas = chunks.get(conversation)
            if datas is None:
                chunks[conversation] = [data]
            else:
                datas.append(data)
        for sender in senders:  # before routing: a quick reply must find its client known
            self._replies.remember(sender)
        # One history row per conversation of the batch: a conversation is read in chunk id
        # order, then array order, and its messages are joined here in submission order, so
        # its order is the order of ``messages`` (other conversations' order is independent).
        batch = MessageBatch(
            chunks=[
                (conv, len(datas), b"[" + b",".join(datas) + b"]") for conv, datas in chunks.items()
            ],
            pending=pending,
            outbox=outbox,
        )
        await self._commit.commit(batch)  # one write, one future for the whole call
        self._history.accepted([entry[0] for entry in entries])
        return await self._route(entries)

    async def _route(self, entries: list[_Entry]) -> list[Accepted | Error]:
        """Route committed messages in order: `Router.route_nowait` first, then the slow path."""
        route_nowait = self._router.route_nowait
        #: Receivers whose mailbox was full in this call: every later message to one of them
        #: takes the slow path too, behind the earlier ones, so one sender's messages to one
        #: receiver still arrive in the order sent (a freed slot must not let message i+1
        #: overtake message i that is waiting for room).
        blocked: set[str] = set()
        #: (index, receiver, reason): deliveries left for the slow path, in order.
        slow: list[tuple[int, str, Reason]] = []
        for index, (data, _, receivers, local, late, remote) in enumerate(entries):
            for receiver in receivers:
                if receiver in remote:
                    continue
                reason = route_nowait(
                    receiver, data, local=receiver in local, late=late, held=receiver in blocked
                )
                if reason is not None:
                    if reason is Reason.MAILBOX_FULL:
                        blocked.add(receiver)
                    slow.append((index, receiver, reason))
        full: dict[int, list[str]] = {}
        if slow:
            await self._route_slow(entries, slow, full)
        results: list[Accepted | Error] = []
        for index, (_, envelope, receivers, _, _, _) in enumerate(entries):
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
        entries: list[_Entry],
        slow: list[tuple[int, str, Reason]],
        full: dict[int, list[str]],
    ) -> None:
        """Full mailboxes, stopped agents and expired messages of a bulk submit, in order.

        One deadline for the call (``submit_wait`` from now), not one per message: concurrent
        `submit` calls would all wait that long at the same time, so the call as a whole waits
        no longer than they would; once it has passed, each full mailbox gets one more try.
        Deliveries stay sequential (one sender's order per receiver); the dead letters are
        written together at the end (the only tasks of `submit_many`, one per dead letter on
        this rare path, so they share group commits instead of one writer round trip each),
        and before returning, as `submit` stores its dead letter before raising.
        """
        router = self._router
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._options.submit_wait
        letters: list[Coroutine[Any, Any, int]] = []
        for index, receiver, why in slow:
            data, envelope = entries[index][0], entries[index][1]
            reason: Reason | None = why
            if why is Reason.MAILBOX_FULL:
                wait = max(deadline - loop.time(), 0.0)
                reason = await router.wait_for_room(receiver, data, wait)
                if reason is None:
                    continue
                if reason is Reason.MAILBOX_FULL:
                    full.setdefault(index, []).append(receiver)
            assert reason is not None
            letters.append(refused(router, receiver, data, header_from(envelope), reason))
        if letters:
            await asyncio.gather(*letters)
