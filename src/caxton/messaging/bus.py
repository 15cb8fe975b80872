"""The event bus behind the WebSocket stream: messages and lifecycle events, filtered.

Each `Subscription` has a bounded queue. Publishing never waits: when a subscriber's queue is
full it is marked *dropped* (its queue is cleared, its iterator ends, ``dropped`` is True and
the API closes the socket with a close code) instead of slowing the router or buffering without
bound. Everything here runs on the event loop thread; messages from the wasm workers arrive in
batches (one loop hop per journal flush) and are decoded only while someone is subscribed.

Events are dicts: ``{"type": "message", ...the envelope...}``, ``{"type": "agent", "name",
"state"}`` (published by the node through `Messaging.publish`), ``{"type": "dead_letter", "id",
"reason", "receiver", "message_id", "conversation_id"}``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import msgspec

__all__ = ["EventBus", "Subscription"]

_decode = msgspec.json.Decoder(dict[str, Any]).decode


class Subscription:
    """An async iterator of matching events; ends when closed or dropped."""

    def __init__(
        self,
        bus: EventBus,
        *,
        agent: str | None,
        performative: str | None,
        conversation: str | None,
        max_queue: int,
    ) -> None:
        self.agent = agent
        self.performative = performative
        self.conversation = conversation
        self.max_queue = max_queue
        self.dropped = False
        self.closed = False
        self._bus = bus
        self._queue: deque[dict[str, Any]] = deque()
        self._ready = asyncio.Event()

    def matches(self, event: dict[str, Any]) -> bool:
        """Whether ``event`` passes this subscription's filters."""
        if self.conversation is not None and event.get("conversation_id") != self.conversation:
            return False
        if self.performative is not None and event.get("performative") != self.performative:
            return False
        if self.agent is not None:
            receiver = event.get("receiver")
            names = receiver if isinstance(receiver, list) else [receiver]
            if self.agent != event.get("sender") and self.agent != event.get("name"):
                return self.agent in names
        return True

    def _offer(self, event: dict[str, Any]) -> None:
        if len(self._queue) >= self.max_queue:
            self.dropped = True
            self._queue.clear()
            self.close()
            return
        self._queue.append(event)
        self._ready.set()

    def get_nowait(self) -> dict[str, Any] | None:
        """The next queued event, or None."""
        return self._queue.popleft() if self._queue else None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def close(self) -> None:
        """Unsubscribe; the iterator ends after the queued events (idempotent)."""
        if not self.closed:
            self.closed = True
            self._bus._remove(self)
            self._ready.set()


class EventBus:
    """Fan-out of events to subscriptions (loop thread only)."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self.published = 0
        self.dropped = 0

    def subscribe(
        self,
        *,
        agent: str | None = None,
        performative: str | None = None,
        conversation: str | None = None,
        max_queue: int = 1000,
    ) -> Subscription:
        """A new subscription with the given filters (None: anything)."""
        sub = Subscription(
            self,
            agent=agent,
            performative=performative,
            conversation=conversation,
            max_queue=max_queue,
        )
        self._subscriptions.append(sub)
        return sub

    def __len__(self) -> int:
        return len(self._subscriptions)

    def publish(self, event: dict[str, Any]) -> None:
        """Offer one event to every matching subscription."""
        self.published += 1
        for sub in list(self._subscriptions):
            if sub.matches(event):
                sub._offer(event)
                if sub.dropped:
                    self.dropped += 1

    def publish_messages(self, bodies: list[bytes]) -> None:
        """Publish stored messages (JSON bytes) as ``message`` events."""
        if not self._subscriptions:
            return
        for body in bodies:
            try:
                event = _decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            event["type"] = "message"
            self.publish(event)

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)
