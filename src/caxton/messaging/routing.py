"""The routing rule, written once: a local mailbox, else a waiting client, else another node,
else a dead letter with a `Reason`.

For one delivery (a receiver and the stamped bytes), in this order:

1. its ``reply_by`` has passed: dead letter ``expired``;
2. a local agent: its mailbox (full or not running: the caller dead-letters, see below);
3. an API client: the clients waiting for it (`Replies`);
4. another node: the cluster's `Remote` (its outbox), else the ``forward`` hook (embedding);
5. an agent of this node that is not running (stopped, failed, or started again meanwhile):
   its mailbox if it runs again, else dead letter ``agent_not_running`` / ``mailbox_full``;
6. anything else: dead letter ``unknown_receiver``.

`Router.route_nowait` (and `route`, which then waits for room in a full mailbox) is the whole
rule for what enters through messaging: API submit and bulk submit, redrive, recovery after a
restart; it hands steps 3-6 to `Router.not_local`. The runtime does step 2 itself for what
its agents send, due timers and `failure` replies (its workers queue straight into local
mailboxes, the hot path never comes here) and hands the rest to `not_local` through its
`Delivery` port (`port.DeliveryPort`), batched with a worker's other events. The last step,
`Router.dead_letter`, stores the dead letter (`DeadLetters`) and sends the sender the
`failure` it is owed back into the runtime (`send_from_loop`: step 2, then `not_local`).

With a cluster, `Router.remote` knows which names live on other nodes. What messaging commits
itself (API submits, bulk, redrive) and what agents send (the journal) puts a message for
another node in the outbox in the same transaction as its history (`outbox_rows`), so it is
never routed here; step 4 is for what enters on the loop (due timers, `failure` replies).

A delivery that step 2 takes has a pending row (written with the message, see `intake`): the
caller of `route` dead-letters it with ``pending=True``; what `not_local` decides never has
one. Dead letters of what agents send are rate-limited node-wide
(``runtime.max_dead_letters_per_second``): beyond it they are counted in `dropped` and
summarised in one warning a second, not stored (each agent's sends to such receivers are
budgeted before that, see `caxton.runtime.sandbox.host`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from time import time_ns
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from caxton.errors import AgentNotFound, MailboxClosed, WouldBlock
from caxton.messaging.deadletters import DeadLetterRate, DeadLetters, Reason, failure_reply
from caxton.messaging.replies import Replies
from caxton.runtime.agent import AgentState
from caxton.runtime.delivery import Offer, Origin
from caxton.storage.outbox import OutboxEntry
from caxton.wire.header import Header, expired, header_of
from caxton.wire.trace import HEAD as _HEAD

if TYPE_CHECKING:
    from caxton.runtime.runtime import Runtime

__all__ = ["DeadLetterFn", "Remote", "Router"]

_RUNNABLE = (AgentState.RUNNING, AgentState.HIBERNATED, AgentState.LOADED)
_HEAD_LEN = len(_HEAD)


class Remote(Protocol):
    """Other nodes, as routing needs them (the cluster implements it)."""

    def locate(self, name: str) -> str | None:
        """The node that hosts ``name`` when it is another node (None: here, or nobody
        known). Any thread; a dict lookup."""
        ...

    def forward(self, receiver: str, data: bytes) -> bool:
        """Put one message for another node in the outbox now (loop thread); True if taken."""
        ...

    def committed(self, entries: Sequence[OutboxEntry]) -> None:
        """These outbox rows were committed (any thread): send them soon."""
        ...

    def expect(self, rows: Sequence[tuple[str, str, str, bytes]]) -> None:
        """These outbox rows (message_id, node, receiver, data) are about to be written on the
        loop thread: nothing is sent early to their receivers before them."""
        ...

    def early_sends(
        self,
    ) -> tuple[Callable[[tuple[bytes, str, str]], None], Callable[[], None]] | None:
        """``(record, ready)`` for `Journal.early`: agents' messages for other nodes that
        may be sent before their outbox rows commit (None: wait for the commit)."""
        ...


class DeadLetterFn(Protocol):
    """Dead-letter one delivery (loop thread).

    ``notify``: send the sender a `failure` reply if it asked for one; ``pending``: the
    delivery has a pending row to mark done.
    """

    def __call__(
        self,
        receiver: str,
        data: bytes,
        header: Header,
        reason: Reason,
        details: dict[str, Any] | None = None,
        *,
        notify: bool,
        pending: bool,
    ) -> None: ...


class Router:
    """The rule (see the module docstring); loop thread only."""

    def __init__(
        self,
        runtime: Runtime,
        replies: Replies,
        letters: DeadLetters,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        *,
        forward: Callable[[str, bytes], bool] | None = None,
        remote: Remote | None = None,
        dead_letters_per_second: int = 1000,
    ) -> None:
        """``spawn`` runs a dead letter in the background (`dead_letter_soon`);
        ``forward(receiver, data)``, the embedder's hook, returns True if it took the message;
        ``remote``: the other nodes of the cluster (None: a single node)."""
        self.runtime = runtime
        self.replies = replies
        self.letters = letters
        self.forward = forward
        self.remote = remote
        self._spawn = spawn
        #: Step 2's question: is ``name`` an agent of this node (any state)? A dict lookup.
        #: In a cluster, not when the registry routes the name to another node: this node
        #: keeps the losing copy of a conflict (docs/cluster.md, "Conflicts").
        self.is_local: Callable[[str], bool] = (
            runtime.has_agent if remote is None else self._hosted_and_routed_here
        )
        self._rate = DeadLetterRate(dead_letters_per_second)
        #: Dead letters of agents' sends not stored (over the rate), by reason.
        self.dropped = self._rate.dropped

    def _hosted_and_routed_here(self, name: str) -> bool:
        remote = self.remote
        return self.runtime.has_agent(name) and (remote is None or remote.locate(name) is None)

    # -- steps 1 and 2: what enters through messaging -----------------------------------------

    def local_receivers(self, receivers: tuple[str, ...], late: bool) -> tuple[str, ...]:
        """The receivers step 2 will take (none once ``late``): each gets a pending row."""
        if late:
            return ()
        is_local = self.is_local
        if len(receivers) == 1:  # the usual case: no generator to run
            return receivers if is_local(receivers[0]) else ()
        return tuple(r for r in receivers if is_local(r))

    def outbox_rows(
        self, message_id: str, receivers: tuple[str, ...], local: tuple[str, ...], data: bytes
    ) -> list[tuple[str, str, str, bytes]]:
        """Outbox rows (message_id, node, receiver, data) for the receivers on other nodes:
        the caller commits them with the message and does not route those receivers."""
        remote = self.remote
        if remote is None:
            return []
        locate = remote.locate
        rows = []
        for receiver in receivers:
            if receiver not in local and (node := locate(receiver)) is not None:
                rows.append((message_id, node, receiver, data))
        return rows

    def route_nowait(
        self,
        receiver: str,
        data: bytes,
        *,
        local: bool,
        late: bool,
        held: bool = False,
        recovered: bool = False,
    ) -> Reason | None:
        """The rule for one committed delivery, without waiting: None once it is taken
        (queued, or decided by `not_local`), else why not: `Reason.EXPIRED`,
        `Reason.AGENT_NOT_RUNNING` (stopped, failed or gone) or `Reason.MAILBOX_FULL` (the
        caller may `wait_for_room`); the caller dead-letters it with ``pending=True`` unless
        expired. ``local``: one of `local_receivers` (it has a pending row); ``late``: its
        ``reply_by`` has passed; ``held``: the caller keeps this receiver's messages in order
        behind an earlier full mailbox (full, untried); ``recovered``: a delivery accepted
        before a restart (`Runtime.deliver_recovered`)."""
        if late:
            return Reason.EXPIRED
        if not local:
            self.not_local(receiver, data, Origin.LOOP)
            return None
        if held:
            return Reason.MAILBOX_FULL
        runtime = self.runtime
        try:
            if recovered:
                runtime.deliver_recovered(receiver, data)
            else:
                runtime.deliver_nowait(receiver, data)
        except WouldBlock:
            return Reason.MAILBOX_FULL
        except (MailboxClosed, AgentNotFound):
            return Reason.AGENT_NOT_RUNNING
        return None

    async def wait_for_room(self, receiver: str, data: bytes, wait: float) -> Reason | None:
        """Step 2 again for a full mailbox, waiting up to ``wait`` seconds for room: None once
        queued, else `Reason.MAILBOX_FULL` or `Reason.AGENT_NOT_RUNNING`."""
        try:
            await self.runtime.deliver(receiver, data, wait=wait)
        except WouldBlock:
            return Reason.MAILBOX_FULL
        except (MailboxClosed, AgentNotFound):
            return Reason.AGENT_NOT_RUNNING
        return None

    async def route(
        self,
        receiver: str,
        data: bytes,
        *,
        local: bool,
        late: bool,
        wait: float | None,
        recovered: bool = False,
    ) -> Reason | None:
        """`route_nowait`, then `wait_for_room` for up to ``wait`` seconds (None: no waiting)
        when the mailbox is full."""
        reason = self.route_nowait(receiver, data, local=local, late=late, recovered=recovered)
        if reason is Reason.MAILBOX_FULL and wait is not None:
            return await self.wait_for_room(receiver, data, wait)
        return reason

    # -- steps 3 to 6: what no running local agent takes ---------------------------------------

    def not_local(
        self, receiver: str, data: bytes, origin: Origin, *, forward: bool = True
    ) -> None:
        """Decide a message no running local agent took (`Delivery.not_local`).

        Dead letters of what an agent sent (`Origin.AGENT`) are rate-limited (see the module
        docstring). ``forward=False`` skips step 4 (a message that came from another node is
        not sent on again).
        """
        header = header_of(data)
        if origin is Origin.AGENT:
            self._external(receiver, data, header, self._limited_dead_letter, forward)
        else:
            self._external(receiver, data, header, self.dead_letter_soon, forward)

    def _external(
        self,
        receiver: str,
        data: bytes,
        header: Header,
        dead_letter: DeadLetterFn,
        forward_ok: bool = True,
    ) -> None:
        # Not queued locally: no pending row, whatever happens here.
        if expired(header):
            dead_letter(receiver, data, header, Reason.EXPIRED, notify=True, pending=False)
            return
        replies = self.replies
        if replies.is_client(receiver):
            conversation = (
                header.conversation_id if isinstance(header.conversation_id, str) else None
            )
            if replies.wants(receiver):
                try:
                    message = msgspec.json.decode(data)
                except msgspec.DecodeError:  # pragma: no cover - stamped messages are JSON
                    message = {}
                replies.deliver(receiver, conversation, message)
            else:
                replies.delivered += 1
            return
        if forward_ok:  # another node (the cluster's branch), or the embedder's hook
            remote = self.remote
            if remote is not None and remote.forward(receiver, data):
                return
            forward = self.forward
            if forward is not None and forward(receiver, data):
                return
        runtime = self.runtime
        try:
            state = runtime.agent_statistics(receiver).state
        except AgentNotFound:
            state = None
        if state is not None:
            if state in _RUNNABLE:  # started again meanwhile
                offered = runtime.enqueue_local(receiver, data)
                if offered is Offer.QUEUED:
                    return
                reason = Reason.MAILBOX_FULL if offered is Offer.FULL else Reason.AGENT_NOT_RUNNING
            else:
                reason = Reason.AGENT_NOT_RUNNING
            details = {"state": state.value}
            dead_letter(receiver, data, header, reason, details, notify=True, pending=False)
            return
        dead_letter(receiver, data, header, Reason.UNKNOWN_RECEIVER, notify=True, pending=False)

    # -- the last step: a dead letter, and the failure reply the sender is owed ----------------

    async def dead_letter(
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
        """Store a dead letter (its id). ``notify``: send the sender its `failure` reply (if it
        asked for one); ``pending``: mark the delivery's pending row done."""
        reason = Reason(reason)
        spans = getattr(self.runtime, "spans", None)
        traced = spans is not None and data[:_HEAD_LEN] == _HEAD
        started = time_ns() if traced else 0
        dead_id = await self.letters.store(receiver, data, header, reason, details, pending=pending)
        if traced:
            assert spans is not None
            attributes = {
                "caxton.reason": reason.value,
                "messaging.destination.name": receiver,
                "caxton.dead_letter_id": dead_id,
            }
            spans.step("caxton.dead_letter", data, started, attributes)
        reply = failure_reply(receiver, header, reason.value) if notify else None
        if reply is not None:
            to, conversation, body = reply
            if traced:  # the sender's handling of the failure continues the trace
                assert spans is not None
                reply_attributes = {"caxton.reason": reason.value, "messaging.destination.name": to}
                body = spans.continued("caxton.failure_reply", data, body, reply_attributes)
            if self.runtime.send_from_loop(to, body, conversation):  # the mailbox is full
                full = Reason.MAILBOX_FULL
                await self.letters.store(to, body, header_of(body), full, pending=False)
        return dead_id

    def dead_letter_soon(
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
        """`dead_letter` in the background (a `DeadLetterFn`)."""
        self._spawn(
            self.dead_letter(
                receiver, data, header, reason, details, notify=notify, pending=pending
            )
        )

    def _limited_dead_letter(
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
        """`dead_letter_soon` within the node's rate for agents' sends."""
        if self._rate.allow(reason):
            self.dead_letter_soon(
                receiver, data, header, reason, details, notify=notify, pending=pending
            )
