"""`CommitNotices`: telling origin nodes that batches answered as pending are committed.

The inbox answers a batch of first sends from a listening origin as soon as it is delivered
and calls `announce` once its write commits; announcements made in one turn of the event loop
are sent together, one `wire.Notice` per origin on ``caxton.node.<origin>.committed``. A
notice that cannot be sent is not retried: the origin sends those entries again after its
commit timeout and this node answers them as duplicates (committed). `heard` is the other
direction: a notice for this node, handed to the forwarder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import msgspec

from caxton.cluster import wire
from caxton.cluster.bus import Bus
from caxton.tasks import TaskSet

__all__ = ["CommitNotices"]

log = logging.getLogger("caxton.cluster.notices")


class CommitNotices:
    """Notices out (batched per origin) and in (see the module docstring); loop thread."""

    def __init__(
        self,
        name: str,
        bus: Callable[[], Bus],
        tasks: TaskSet,
        settle: Callable[[str, Sequence[int]], None],
    ) -> None:
        """``bus()``: the node's bus now; ``tasks`` owns the sending task; ``settle(node,
        seqs)``: what a notice heard here does (the forwarder's `committed_at`)."""
        self._name = name
        self._bus = bus
        self._tasks = tasks
        self._settle = settle
        self._waiting: dict[str, list[int]] = {}
        self._sending: asyncio.Task[None] | None = None
        self.sent = self.heard_total = self.failed = 0
        self._closed = False

    def close(self) -> None:
        """Announce nothing more (the node stops; the origins send again what they miss)."""
        self._closed = True

    def announce(self, origin: str, seqs: list[int]) -> None:
        """Entries of ``origin``'s batches are committed here: tell it soon."""
        waiting = self._waiting.get(origin)
        if waiting is None:
            self._waiting[origin] = list(seqs)
        else:
            waiting.extend(seqs)
        if self._sending is None and not self._closed:
            self._sending = self._tasks.start(self._send(), "commit notices")

    async def _send(self) -> None:
        try:
            while self._waiting:
                notices, self._waiting = self._waiting, {}
                for origin, seqs in notices.items():
                    try:
                        await self._bus().publish(
                            wire.committed_subject(origin), wire.encode_notice(self._name, seqs)
                        )
                        self.sent += 1
                    except Exception as exc:  # the origin sends them again, and hears then
                        self.failed += 1
                        log.debug("a commit notice to %s failed: %s", origin, exc)
        finally:
            self._sending = None

    def heard(self, _: str, payload: bytes) -> None:
        """A notice for this node (the bus's subscription handler)."""
        try:
            notice = wire.decode_notice(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.debug("a malformed commit notice was dropped: %s", exc)
            return
        self.heard_total += 1
        self._settle(notice.node, notice.seqs)
