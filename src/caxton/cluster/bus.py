"""`Bus`: what the cluster needs of NATS (publish, subscribe), and two implementations.

`NatsBus` is the real one, over a nats-py connection to the node's own nats-server.
`InMemoryBus` carries messages between several members in one process, synchronously, for
tests that run in virtual time: `InMemoryBus.connect` gives each member its own `Bus`, and
`InMemoryBus.partition` splits the members into groups that cannot hear each other until
`InMemoryBus.heal`. Like core NATS, a bus is at-most-once: a message nobody can hear is gone.

A handler is a plain function of (subject, payload): it must not block, and what it raises is
logged and dropped (one bad message must not stop the subscription).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from nats.errors import ConnectionClosedError

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

__all__ = ["Bus", "Handler", "InMemoryBus", "NatsBus", "Unsubscribe", "subject_matches"]

_log = logging.getLogger("caxton.cluster.bus")

#: Called with (subject, payload) for each message of a subscription.
Handler = Callable[[str, bytes], None]


class Unsubscribe(Protocol):
    """Ends a subscription (idempotent)."""

    async def __call__(self) -> None: ...


class Bus(Protocol):
    """Fire-and-forget subjects, as core NATS offers them."""

    async def publish(self, subject: str, payload: bytes) -> None:
        """Send `payload` to whoever subscribes to `subject` now (at most once)."""
        ...

    async def subscribe(self, subject: str, handler: Handler) -> Unsubscribe:
        """Call `handler` for each message on `subject` (NATS wildcards ``*``, ``>``)."""
        ...


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether `subject` matches `pattern` as NATS matches them (``*`` one token, ``>`` rest)."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or (token != "*" and token != tokens[index]):
            return False
    return len(wanted) == len(tokens)


def _deliver(handler: Handler, subject: str, payload: bytes) -> None:
    try:
        handler(subject, payload)
    except Exception:  # one bad message must not end the subscription
        _log.exception("a handler for %s failed", subject)


class InMemoryBus:
    """Subjects shared by the members of one process, with partitions that a test makes."""

    def __init__(self) -> None:
        self._subscriptions: list[tuple[str, str, Handler]] = []  # (member, pattern, handler)
        self._groups: dict[str, int] = {}
        #: Messages delivered to a handler, and messages that nobody could hear.
        self.delivered = 0
        self.dropped = 0

    def connect(self, member: str) -> MemberBus:
        """The `Bus` of one member (`member` names it in `partition`)."""
        return MemberBus(self, member)

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the members: those in different groups cannot hear each other. A member in no
        group is in a group of its own."""
        self._groups = {}
        for index, group in enumerate(groups):
            for member in group:
                self._groups[member] = index

    def heal(self) -> None:
        """End every partition."""
        self._groups = {}

    def can_hear(self, listener: str, sender: str) -> bool:
        """Whether a message from `sender` reaches `listener` under the current partition."""
        if not self._groups:
            return True
        return self._group(listener) == self._group(sender)

    def _group(self, member: str) -> object:
        return self._groups.get(member, ("alone", member))

    def _publish(self, sender: str, subject: str, payload: bytes) -> None:
        heard = False
        for member, pattern, handler in list(self._subscriptions):
            if subject_matches(pattern, subject) and self.can_hear(member, sender):
                heard = True
                self.delivered += 1
                _deliver(handler, subject, payload)
        if not heard:
            self.dropped += 1

    def _subscribe(self, member: str, pattern: str, handler: Handler) -> Unsubscribe:
        entry = (member, pattern, handler)
        self._subscriptions.append(entry)

        async def unsubscribe() -> None:
            if entry in self._subscriptions:
                self._subscriptions.remove(entry)

        return unsubscribe


class MemberBus:
    """One member's connection to an `InMemoryBus` (delivery is synchronous)."""

    def __init__(self, bus: InMemoryBus, member: str) -> None:
        self._bus = bus
        self.member = member

    async def publish(self, subject: str, payload: bytes) -> None:
        self._bus._publish(self.member, subject, payload)

    async def subscribe(self, subject: str, handler: Handler) -> Unsubscribe:
        return self._bus._subscribe(self.member, subject, handler)


class NatsBus:
    """A `Bus` over a nats-py connection (which its owner connects and closes)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def publish(self, subject: str, payload: bytes) -> None:
        await self._client.publish(subject, payload)

    async def subscribe(self, subject: str, handler: Handler) -> Unsubscribe:
        async def callback(message: Msg) -> None:
            _deliver(handler, message.subject, message.data)

        subscription = await self._client.subscribe(subject, cb=callback)
        done = False

        async def unsubscribe() -> None:
            nonlocal done
            if not done:
                done = True
                with contextlib.suppress(ConnectionClosedError):  # gone with the connection
                    await subscription.unsubscribe()

        return unsubscribe
