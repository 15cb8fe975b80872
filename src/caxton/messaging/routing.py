"""The routing rule, written once: a local mailbox, else a waiting client, else another node,
else a dead letter with a `Reason`.

Every path follows it: API submit and bulk submit, redrive and recovery after a restart
(`to_mailbox` for the local step, `MessagingRouter.not_local` for the rest), agents' sends,
timers and failure replies (the runtime queues for local agents itself and hands the rest to
`not_local`). The next branch, forwarding to the node that owns an agent, is the ``forward``
hook in `MessagingRouter.not_local`, between the clients and the dead letters.

Local agent-to-agent messages never come here: the runtime's workers queue them directly
(after telling the `journal`, which `Messaging` hands the runtime as its `Delivery` port).
What comes here, through `Messaging.not_local` (the port's method), on the event loop:

* what an agent sent to a name that is not a running local agent, handed over in the
  worker's next event batch (no hop per message), and messages the loop delivers (due
  timers, `failure` replies, API submits for non-local receivers). `not_local` decides: a
  reply to an API client (waiters get it), another node (the ``forward`` hook, for the
  cluster), a stopped agent or an unknown name (dead letters), or an expired ``reply_by``
  (dead letter). Dead letters of what agents send are rate-limited node-wide
  (``runtime.max_dead_letters_per_second``): beyond it they are counted in `dropped` and
  summarised in one warning a second, not stored (each agent's sends to such receivers are
  budgeted before that, see `caxton.runtime.sandbox.host`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from caxton.errors import AgentNotFound, MailboxClosed, WouldBlock
from caxton.messaging.deadletters import Reason
from caxton.messaging.replies import Replies
from caxton.runtime.agent import AgentState
from caxton.runtime.delivery import Offer, Origin
from caxton.wire.header import Header, expired, header_of

if TYPE_CHECKING:
    from caxton.runtime.runtime import Runtime

__all__ = ["DeadLetterFn", "MessagingRouter", "to_mailbox"]


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


async def to_mailbox(
    runtime: Runtime, receiver: str, data: bytes, *, wait: float | None, recovered: bool = False
) -> Reason | None:
    """The rule's local step for an agent's name: queue ``data`` in its mailbox.

    None once queued, else why not: `Reason.MAILBOX_FULL` when it stayed full for ``wait``
    seconds (None: no waiting), `Reason.AGENT_NOT_RUNNING` when the agent is stopped, failed
    or gone. ``recovered``: a delivery accepted before a restart (`Runtime.deliver_recovered`).
    """
    try:
        try:  # the usual case: room in the mailbox, no coroutine to run
            if recovered:
                runtime.deliver_recovered(receiver, data)
            else:
                runtime.deliver_nowait(receiver, data)
        except WouldBlock:
            if wait is None:
                raise
            await runtime.deliver(receiver, data, wait=wait)
    except WouldBlock:
        return Reason.MAILBOX_FULL
    except (MailboxClosed, AgentNotFound):
        return Reason.AGENT_NOT_RUNNING
    return None


_log = logging.getLogger("caxton.messaging")
_RUNNABLE = (AgentState.RUNNING, AgentState.HIBERNATED, AgentState.LOADED)


class MessagingRouter:
    """Decides what no running local agent takes; see the module docstring."""

    def __init__(
        self,
        runtime: Runtime,
        replies: Replies,
        dead_letter: DeadLetterFn,
        *,
        forward: Callable[[str, bytes], bool] | None = None,
        dead_letters_per_second: int = 1000,
    ) -> None:
        self.runtime = runtime
        self.replies = replies
        #: The cluster's hook: ``forward(receiver, data)`` returns True if it took the message.
        self.forward = forward
        self._dead_letter = dead_letter
        #: Dead letters of agents' sends not stored (over the rate), by reason.
        self.dropped: dict[str, int] = {}
        self._per_second = dead_letters_per_second
        self._credit = 0
        self._window = float("-inf")
        self._dropped_in_window = 0

    # -- the loop side -----------------------------------------------------------------------

    def _allow_dead_letter(self, reason: Reason) -> bool:
        """Take one from the node's dead-letter rate for agents' sends; count it if over."""
        if self._credit > 0:
            self._credit -= 1
            return True
        now = time.monotonic()
        if now - self._window >= 1.0:
            if self._dropped_in_window:
                _log.warning(
                    "dead letters over runtime.max_dead_letters_per_second (%d):"
                    " %d not stored in the last window",
                    self._per_second,
                    self._dropped_in_window,
                )
            self._window, self._dropped_in_window = now, 0
            self._credit = self._per_second - 1
            return True
        self._dropped_in_window += 1
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return False

    def not_local(self, receiver: str, data: bytes, origin: Origin) -> None:
        """Decide a message no running local agent took (loop thread).

        Dead letters of what an agent sent (`Origin.AGENT`) are rate-limited (see the module
        docstring).
        """
        header = header_of(data)
        if origin is Origin.AGENT:
            self._external(receiver, data, header, self._limited_dead_letter)
        else:
            self._external(receiver, data, header, self._dead_letter)

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
        """`DeadLetterFn` within the node's rate for agents' sends (`_allow_dead_letter`)."""
        if self._allow_dead_letter(reason):
            self._dead_letter(
                receiver, data, header, reason, details, notify=notify, pending=pending
            )

    def _external(
        self, receiver: str, data: bytes, header: Header, dead_letter: DeadLetterFn
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
        forward = self.forward  # another node (the cluster's branch)
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
