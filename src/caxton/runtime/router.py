"""The default `Router`: local agents first, everything else to an ``external`` callback.

The messaging layer replaces this with the real router (conversations, durability, remote
nodes) behind the same `Router.route` method. ``external`` runs on the event loop thread (the
runtime batches the hand-over from workers); it receives messages for API clients waiting for
replies, for stopped agents and for unknown receivers (dead letters).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from caxton.runtime.runtime import Runtime

__all__ = ["LocalRouter"]


class LocalRouter:
    """Deliver to local mailboxes; hand the rest to ``external(receiver, data)`` on the loop."""

    def __init__(
        self, runtime: Runtime, external: Callable[[str, bytes], None] | None = None
    ) -> None:
        self._runtime = runtime
        self._external = external

    def route(self, receiver: str, data: bytes) -> int:
        """0, or -4 when the local receiver's mailbox is full."""
        rc = self._runtime.enqueue_local(receiver, data)
        if rc is None:
            if self._external is not None:
                self._runtime.call_on_loop(self._external, receiver, data)
            return 0
        return rc
