"""`MessagingRouter`: the runtime's `Router`, and where non-local messages are decided.

Local agent-to-agent messages never come here: the worker queues them directly (after telling
the `journal`, which this router carries so the runtime's workers find it). What comes here:

* from a worker thread: a message for a name that is not a running local agent. It is handed
  to the event loop in the worker's next event batch (no hop per message) and decided there by
  `external`: a reply to an API client (waiters get it), a remote agent (the ``remote`` hook,
  for the cluster), a stopped agent or an unknown name (dead letters), or an expired
  ``reply_by`` (dead letter). Dead letters of what agents send are rate-limited node-wide
  (``runtime.max_dead_letters_per_second``): beyond it they are counted in `dropped` and
  summarised in one warning a second, not stored (each agent's sends to such receivers are
  budgeted before that, see `caxton.runtime.host`).
* on the event loop: a due timer (`schedule`); it is recorded in the journal and queued like a
  message an agent sends now.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from caxton.errors import AgentNotFound
from caxton.messaging.journal import Journal
from caxton.messaging.replies import Replies
from caxton.runtime.agent import AgentState
from caxton.wire.header import Header, expired, header_of

if TYPE_CHECKING:
    from caxton.runtime.runtime import Runtime

__all__ = ["DeadLetterFn", "MessagingRouter"]

#: ``dead_letter(receiver, data, header, reason, details, notify, pending)`` (loop thread).
DeadLetterFn = Callable[[str, bytes, Header, str, dict[str, Any], bool, bool], None]
_log = logging.getLogger("caxton.messaging")
_RUNNABLE = (AgentState.RUNNING, AgentState.HIBERNATED, AgentState.LOADED)


class MessagingRouter:
    """Routes what the workers cannot deliver locally; see the module docstring."""

    def __init__(
        self,
        journal: Journal,
        replies: Replies,
        dead_letter: DeadLetterFn,
        *,
        dead_letters_per_second: int = 1000,
    ) -> None:
        self.journal = journal
        self.replies = replies
        self.runtime: Runtime | None = None
        #: The cluster's hook: ``remote(receiver, data)`` returns True if it took the message.
        self.remote: Callable[[str, bytes], bool] | None = None
        #: Called with (receiver, message dict) for each client reply (the facade publishes).
        self._dead_letter = dead_letter
        self._loop_thread: int | None = None
        self.routed_external = 0
        #: Dead letters of agents' sends not stored (over the rate), by reason.
        self.dropped: dict[str, int] = {}
        self._per_second = dead_letters_per_second
        self._credit = 0
        self._window = float("-inf")
        self._dropped_in_window = 0

    def bind_loop(self) -> None:
        """Remember the event loop's thread (called by `Messaging.start` on the loop)."""
        self._loop_thread = threading.get_ident()

    # -- the Router protocol -----------------------------------------------------------------

    def route(self, receiver: str, data: bytes) -> int:
        """Deliver ``data`` to ``receiver`` (worker threads and the loop): 0 or -4."""
        runtime = self.runtime
        if runtime is None:
            return 0
        if threading.get_ident() == self._loop_thread:
            return self.route_from_loop(receiver, data, None)
        runtime.call_on_loop(self.external, receiver, data, True)
        return 0

    def route_from_loop(self, receiver: str, data: bytes, conversation: str | None) -> int:
        """Record and deliver a message that enters on the loop thread (timers, failures)."""
        runtime = self.runtime
        assert runtime is not None
        header = header_of(data) if conversation is None else None
        if header is not None:
            conversation = (
                header.conversation_id if isinstance(header.conversation_id, str) else None
            )
        journal = self.journal
        journal.sent(conversation, data, receiver)
        rc = runtime.enqueue_local(receiver, data)
        if rc is None:
            journal.handled(receiver, data)
            self.external(receiver, data)
            return 0
        if rc:
            journal.retract(data)
            journal.handled(receiver, data)
        return rc

    # -- the loop side -----------------------------------------------------------------------

    def _allow_dead_letter(self, reason: str) -> bool:
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

    def external(self, receiver: str, data: bytes, from_agent: bool = False) -> None:
        """Decide a message no running local agent took (loop thread).

        ``from_agent``: an agent sent it (`route` from a worker); its dead letters are
        rate-limited (see the module docstring).
        """
        self.routed_external += 1
        header = header_of(data)
        if from_agent:
            dead_letter = self._dead_letter

            def limited(*args: Any) -> None:
                if self._allow_dead_letter(args[3]):
                    dead_letter(*args)

            self._external(receiver, data, header, limited)
        else:
            self._external(receiver, data, header, self._dead_letter)

    def _external(
        self, receiver: str, data: bytes, header: Header, dead_letter: Callable[..., None]
    ) -> None:
        if expired(header):
            dead_letter(receiver, data, header, "expired", {}, True, False)
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
        remote = self.remote
        if remote is not None and remote(receiver, data):
            return
        runtime = self.runtime
        try:
            state = None if runtime is None else runtime.agent_statistics(receiver).state
        except AgentNotFound:
            state = None
        if runtime is not None and state is not None:
            if state in _RUNNABLE:  # started again meanwhile
                rc = runtime.enqueue_local(receiver, data)
                if rc == 0:
                    return
                reason = "mailbox_full" if rc else "agent_not_running"
            else:
                reason = "agent_not_running"
            dead_letter(receiver, data, header, reason, {"state": state.value}, True, False)
            return
        dead_letter(receiver, data, header, "unknown_receiver", {}, True, False)
