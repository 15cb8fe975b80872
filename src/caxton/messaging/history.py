"""The conversation history: the journal that records agents' messages, the pages the API
reads back, the live stream of what was recorded, and retention.

Every message a node accepted (`intake`) or an agent sent (the `journal`, on the worker
threads) is kept in its conversation, in order, up to ``max_history`` messages and
``max_history_bytes``; `prune` enforces those budgets and ``max_dead_letters`` together (one
storage write). What a journal flush wrote is published to the event bus subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from caxton.messaging.bus import EventBus
from caxton.messaging.deadletters import DeadLetters
from caxton.messaging.journal import Journal
from caxton.messaging.options import MessagingOptions
from caxton.storage.sqlite import Storage
from caxton.wire.codec import decode_array

__all__ = ["History"]


class History:
    """The history of conversations (see the module docstring); owns the `journal`."""

    def __init__(
        self,
        storage: Storage,
        bus: EventBus,
        letters: DeadLetters,
        options: MessagingOptions,
    ) -> None:
        self._storage = storage
        self._bus = bus
        self._letters = letters
        self._options = options
        #: Agents' messages, recorded on the worker threads (the runtime's `MessageJournal`).
        self.journal = Journal(storage.messages.write_nowait, listener=self._published)
        #: Messages accepted from API clients (and redriven) since start.
        self.submitted = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Publish what journal flushes write from now on (to this event loop)."""
        self._loop = asyncio.get_running_loop()

    def accepted(self, data: list[bytes]) -> None:
        """Messages from API clients, committed: count them and publish them."""
        self.submitted += len(data)
        if len(self._bus):  # no event to build while nobody is subscribed
            self._bus.publish_messages(data)

    def _published(self, sent: list[bytes]) -> None:
        """The journal's listener: a flush's new messages (on the flushing thread)."""
        loop = self._loop
        if len(self._bus) and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(self._bus.publish_messages, sent)

    async def conversation(
        self, conversation_id: str, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[dict[str, Any]], int]:
        """The conversation's messages in order (a page) and their total number."""
        await self.written()
        blobs, skip, total = await self._storage.messages.conversation(
            conversation_id, offset=offset, limit=limit
        )
        messages: list[dict[str, Any]] = []
        for blob in blobs:
            messages.extend(decode_array(blob))
        return messages[skip : skip + limit], total

    async def written(self) -> None:
        """Flush the journal and wait until everything recorded so far is committed."""
        flushed = self.journal.flush(block=False)
        if flushed is not None:
            await asyncio.wrap_future(flushed)
        await self._storage.write(lambda c: None)  # every earlier flush is committed now

    # -- retention ---------------------------------------------------------------------------

    def prune_mark(self) -> tuple[int, int, int]:
        """Messages recorded, dead letters counted, and bytes agents sent since start."""
        journal = self.journal
        return (self.submitted + journal.sent_total, self._letters.total(), journal.sent_bytes)

    async def prune(self) -> tuple[int, int]:
        """Enforce ``max_history``, ``max_history_bytes`` and ``max_dead_letters`` now:
        (chunks, dead letters) dropped."""
        options = self._options
        dropped = await self._storage.messages.prune(
            max_history=options.max_history,
            max_history_bytes=options.max_history_bytes,
            max_dead_letters=options.max_dead_letters,
        )
        self._letters.expired += dropped[1]
        return dropped
