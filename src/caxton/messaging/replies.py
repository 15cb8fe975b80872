"""Replies to API clients: which names are clients, and who waits for what.

A message an agent sends to a name that is not an agent is a reply to an API client when that
name is a *known client*: one that submitted a message recently (the last `max_clients` names
are remembered) or one waiting for a reply right now. It is kept in its conversation (the
journal did that) and handed to every waiter registered for that (conversation, client). Any
other non-agent name is an unknown receiver (a dead letter).

Race-freedom: a waiter is registered *before* the message it waits for a reply to is routed
(`Messaging.submit(..., wait=True)`), so a reply cannot slip past it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

__all__ = ["Replies", "ReplyWaiter"]


class ReplyWaiter:
    """The first reply to one client in one conversation (loop thread only)."""

    def __init__(self, replies: Replies, conversation_id: str, client: str) -> None:
        self.conversation_id = conversation_id
        self.client = client
        self._replies = replies
        self._future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def _resolve(self, message: dict[str, Any]) -> None:
        if not self._future.done():
            self._future.set_result(message)

    async def wait(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        """The reply, or None if none came within ``timeout`` seconds; then unregisters."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._future), timeout)
        except TimeoutError:
            return None
        finally:
            self.close()

    def close(self) -> None:
        """Stop waiting (idempotent)."""
        self._replies._forget(self)
        if not self._future.done():
            self._future.cancel()


class Replies:
    """Known clients and reply waiters (loop thread only)."""

    def __init__(self, max_clients: int) -> None:
        self._max = max_clients
        self._clients: OrderedDict[str, None] = OrderedDict()
        self._waiters: dict[str, dict[str, list[ReplyWaiter]]] = {}
        self.delivered = 0

    def remember(self, client: str) -> None:
        """Note ``client`` as a reply address (most recently used)."""
        clients = self._clients
        clients[client] = None
        clients.move_to_end(client)
        if len(clients) > self._max:
            clients.popitem(last=False)

    def is_client(self, name: str) -> bool:
        """True for a known client or a name with waiters."""
        return name in self._clients or name in self._waiters

    def expect(self, conversation_id: str, client: str) -> ReplyWaiter:
        """Register a waiter for the next reply to ``client`` in ``conversation_id``."""
        waiter = ReplyWaiter(self, conversation_id, client)
        self._waiters.setdefault(client, {}).setdefault(conversation_id, []).append(waiter)
        return waiter

    def wants(self, client: str) -> bool:
        """Whether anyone waits for replies to ``client`` (decode only then)."""
        return client in self._waiters

    def deliver(self, client: str, conversation_id: str | None, message: dict[str, Any]) -> int:
        """Hand a reply to the waiters of (conversation, client); how many got it."""
        self.delivered += 1
        if conversation_id is None:
            return 0
        waiters = self._waiters.get(client, {}).get(conversation_id, [])
        for waiter in list(waiters):
            waiter._resolve(message)
        return len(waiters)

    def waiting(self) -> int:
        """Registered waiters."""
        return sum(len(w) for by_conv in self._waiters.values() for w in by_conv.values())

    def known_clients(self) -> int:
        """Remembered client names."""
        return len(self._clients)

    def _forget(self, waiter: ReplyWaiter) -> None:
        by_conv = self._waiters.get(waiter.client)
        if by_conv is None:
            return
        waiters = by_conv.get(waiter.conversation_id)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del by_conv[waiter.conversation_id]
        if not by_conv:
            del self._waiters[waiter.client]
