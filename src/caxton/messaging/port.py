"""The messaging side of the runtime's port: the `Delivery` and `AgentEvents` it is handed.

The runtime and the routing rule call each other: the runtime hands what no running local
agent takes to `DeliveryPort.not_local` (and handler failures and state changes to the
events), and the rule queues into the runtime's mailboxes. `DeliveryPort` closes that loop
at construction, in one step: it hands itself to the runtime factory, then builds the
`Router` on the runtime it got (both factories come from `Messaging`, which wires the rest).
Nothing is set afterwards.

What the runtime calls here:

* ``journal``: the `Journal` the workers record every sent and handled message in (the
  history's; the hot path appends to it directly);
* ``locate``: with a cluster, the node hosting a name when it is another node (the router's
  `Remote.locate`; None on a single node);
* `not_local`: step 3 onwards of the routing rule (`Router.not_local`), on the event loop;
* `message_failed`: a handler failed: the message is dead-lettered ``handler_failed``;
* `agent_state_changed`: a lifecycle event for the event bus.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from caxton.errors import AgentFailure
from caxton.messaging.bus import EventBus
from caxton.messaging.deadletters import Reason
from caxton.messaging.journal import Journal
from caxton.messaging.routing import Router
from caxton.runtime.agent import AgentState
from caxton.runtime.delivery import Origin
from caxton.wire.header import header_of

if TYPE_CHECKING:
    from caxton.runtime.runtime import Runtime

__all__ = ["DeliveryPort"]


#: What a failure's details add to its dead letter: the trap code, the line the agent logged
#: (a panic's text) and the wasm backtrace.
_KEPT = ("trap_code", "log", "backtrace")


class DeliveryPort:
    """`Delivery` and `AgentEvents` for the runtime (see the module docstring)."""

    def __init__(
        self,
        journal: Journal,
        bus: EventBus,
        *,
        runtime: Callable[[DeliveryPort], Runtime],
        router: Callable[[Runtime], Router],
        locate: Callable[[str], str | None] | None = None,
    ) -> None:
        """``runtime`` builds the runtime around this port; ``router`` the rule on it;
        ``locate``: the cluster's `Remote.locate` (None: a single node)."""
        #: The runtime's `MessageJournal`.
        self.journal = journal
        self._bus = bus
        #: Set before the runtime is built (its workers read it once).
        self.locate: Callable[[str], str | None] | None = locate
        self.runtime = runtime(self)
        self.router = router(self.runtime)

    def not_local(self, receiver: str, data: bytes, origin: Origin) -> None:
        """A message no running local agent takes (event loop thread): `Router.not_local`."""
        self.router.not_local(receiver, data, origin)

    def message_failed(self, name: str, data: bytes, error: AgentFailure) -> None:
        """A handler failed: dead-letter the message (reason ``handler_failed``)."""
        details: dict[str, object] = {"cause": error.cause, "error": error.message}
        details.update((k, error.details[k]) for k in _KEPT if k in error.details)
        self.router.dead_letter_soon(
            name, data, header_of(data), Reason.HANDLER_FAILED, details, notify=True, pending=True
        )

    def agent_state_changed(self, name: str, state: AgentState) -> None:
        """Publish a lifecycle event."""
        self._bus.publish({"type": "agent", "name": name, "state": state.value})
