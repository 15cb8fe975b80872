"""`Bus`: what the cluster needs of NATS (publish, subscribe, request), two implementations.

`NatsBus` is the real one, over a nats-py connection to the node's own nats-server.
`InMemoryBus` carries messages between several members in one process, synchronously, for
tests that run in virtual time: `InMemoryBus.connect` gives each member its own `Bus`, and
`InMemoryBus.partition` splits the members into groups that cannot hear each other until
`InMemoryBus.heal`. Like core NATS, a bus is at-most-once: a message nobody can hear is gone.

A handler is a plain function of (subject, payload): it must not block, and what it raises is
logged and dropped (one bad message must not stop the subscription). A responder (`Bus.serve`)
is a coroutine that returns the reply; if it raises, the error is logged and no reply is sent,
so the requester times out. Requests are answered one at a time unless ``concurrent`` (then
each is answered in its own task, and the responder keeps whatever order it needs).
`Bus.request` raises `NoResponders` when nobody serves the subject, and `TimeoutError`
when no reply came in time (in memory: at once, when the only responders are on the other
side of a partition or failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Protocol, TypeVar

from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from caxton.cluster.signing import BusSigner
from caxton.tasks import TaskSet

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

T = TypeVar("T")

__all__ = [
    "Bus",
    "Handler",
    "InMemoryBus",
    "NatsBus",
    "NoResponders",
    "Responder",
    "Unsubscribe",
    "subject_matches",
]

_log = logging.getLogger("caxton.cluster.bus")

#: Called with (subject, payload) for each message of a subscription.
Handler = Callable[[str, bytes], None]
#: Called with (subject, payload) for each request; returns the reply.
Responder = Callable[[str, bytes], Awaitable[bytes]]


class NoResponders(LookupError):
    """Nobody serves the subject of a request."""


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

    async def serve(
        self, subject: str, responder: Responder, *, concurrent: bool = False
    ) -> Unsubscribe:
        """Answer each request on `subject` with what `responder` returns (``concurrent``:
        without waiting for the previous answers)."""
        ...

    async def request(self, subject: str, payload: bytes, within: float) -> bytes:
        """The first reply within `within` seconds (or `NoResponders`, `TimeoutError`)."""
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
        self._responders: list[tuple[str, str, Responder]] = []
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
        return _entry(self._subscriptions, (member, pattern, handler))

    def _serve(self, member: str, pattern: str, responder: Responder) -> Unsubscribe:
        return _entry(self._responders, (member, pattern, responder))

    async def _request(self, sender: str, subject: str, payload: bytes, within: float) -> bytes:
        serving = [entry for entry in self._responders if subject_matches(entry[1], subject)]
        if not serving:
            raise NoResponders(subject)
        for member, _, responder in serving:
            if self.can_hear(member, sender):
                try:
                    return await asyncio.wait_for(responder(subject, payload), within)
                except TimeoutError:
                    raise
                except Exception:
                    _log.exception("a responder for %s failed", subject)
        raise TimeoutError(f"no reply on {subject}")


def _entry(entries: list[tuple[str, str, T]], entry: tuple[str, str, T]) -> Unsubscribe:
    entries.append(entry)

    async def unsubscribe() -> None:
        if entry in entries:
            entries.remove(entry)

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

    async def serve(
        self, subject: str, responder: Responder, *, concurrent: bool = False
    ) -> Unsubscribe:
        # each request is already its own call here: concurrent either way
        return self._bus._serve(self.member, subject, responder)

    async def request(self, subject: str, payload: bytes, within: float) -> bytes:
        return await self._bus._request(self.member, subject, payload, within)


class NatsBus:
    """A `Bus` over a nats-py connection (which its owner connects and closes); with a
    ``signer``, every message is signed and checked (`caxton.cluster.signing`)."""

    def __init__(self, client: Client, signer: BusSigner | None = None) -> None:
        self._client = client
        self._signer = signer or BusSigner(None)

    async def publish(self, subject: str, payload: bytes) -> None:
        headers = self._signer.headers(subject, payload)
        await self._client.publish(subject, payload, headers=headers)

    async def subscribe(self, subject: str, handler: Handler) -> Unsubscribe:
        signer = self._signer

        async def callback(message: Msg) -> None:
            if signer.accepts(message.subject, message.headers, message.data):
                _deliver(handler, message.subject, message.data)

        return _closer(await self._client.subscribe(subject, cb=callback))

    async def serve(
        self, subject: str, responder: Responder, *, concurrent: bool = False
    ) -> Unsubscribe:
        signer, client = self._signer, self._client

        async def answer(message: Msg) -> None:
            if not signer.accepts(message.subject, message.headers, message.data):
                return  # no reply: the requester times out
            try:
                reply = await responder(message.subject, message.data)
            except Exception:  # no reply: the requester times out
                _log.exception("a responder for %s failed", message.subject)
                return
            headers = signer.headers("reply:" + message.subject, reply)
            with contextlib.suppress(ConnectionClosedError):  # the requester retries
                await client.publish(message.reply, reply, headers=headers)

        if not concurrent:
            return _closer(await self._client.subscribe(subject, cb=answer))
        # nats-py awaits a subscription's callback before the next message: answer each in
        # a task of its own, owned here and cancelled when the subscription ends
        answering = TaskSet(f"responder of {subject}", log=_log)

        async def callback(message: Msg) -> None:
            answering.start(answer(message), f"answer on {message.subject}")

        return _closer(await self._client.subscribe(subject, cb=callback), answering)

    async def request(self, subject: str, payload: bytes, within: float) -> bytes:
        signer = self._signer
        try:
            reply = await self._client.request(
                subject, payload, timeout=within, headers=signer.headers(subject, payload)
            )
        except NoRespondersError as error:
            raise NoResponders(subject) from error
        except NatsTimeoutError as error:
            raise TimeoutError(f"no reply on {subject} within {within} s") from error
        if not signer.accepts("reply:" + subject, reply.headers, reply.data):
            raise TimeoutError(f"no signed reply on {subject}")
        return reply.data


def _closer(subscription: Subscription, answering: TaskSet | None = None) -> Unsubscribe:
    done = False

    async def unsubscribe() -> None:
        nonlocal done
        if not done:
            done = True
            with contextlib.suppress(ConnectionClosedError):  # gone with the connection
                await subscription.unsubscribe()
            if answering is not None:  # not answered: the requesters retry
                await answering.aclose()

    return unsubscribe
