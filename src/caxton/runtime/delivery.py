"""The runtime's port to message delivery: declared here, implemented by `caxton.messaging`.

The runtime queues messages for its running local agents itself (`Agent.offer`, on the worker
threads, without leaving the runtime). Everything else about delivery belongs to the owner of
delivery, which the runtime is handed at construction as a `Delivery`:

* what the runtime sends and what it handled: `Delivery.journal` records every message an
  agent sends and every message handled successfully, on the worker threads (None: nothing is
  recorded, as with `LocalDelivery`);
* what to flush: `MessageJournal.flush`, when a worker posts its events to the loop (records
  reach storage before the loop acts on them) and every ``flush_at`` entries;
* what lives on another node: a delivery with a cluster has a ``locate(name)`` attribute (the
  node hosting ``name`` when it is another node; any thread); the workers record such a send
  with `MessageJournal.sent_remote` and do not route it (the outbox takes it);
* what is not local: `Delivery.not_local`, on the event loop thread, for a message whose
  receiver is no running local agent (an API client, another node, a stopped agent, an unknown
  name) or whose ``reply_by`` has passed. Messages from workers arrive batched with the
  worker's other events.

`Offer` is what queueing into a local mailbox returns, everywhere in the runtime.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sized
from typing import Any, Protocol

__all__ = ["LARGE_MESSAGE", "Delivery", "LocalDelivery", "MessageJournal", "Offer", "Origin"]

#: A sent message of this many bytes or more is flushed as soon as it is recorded, so that a
#: journal batch (and a history chunk) holds at most one large message beyond ``flush_at``
#: small ones: memory and chunks stay bounded in bytes, not only in entries.
LARGE_MESSAGE = 64 * 1024


class Offer(enum.IntEnum):
    """The result of queueing one message into a local agent's mailbox (`Agent.offer`).

    An `IntEnum`: the hot path compares it as an integer, and `FULL` is the ABI's own code.
    """

    QUEUED = 0  # queued; the agent is already scheduled
    WAKE = 1  # queued; the caller must put the agent on a run queue
    CLOSED = 2  # the mailbox is closed (stopped, failed or removed agent)
    FULL = -4  # the mailbox is full: ``abi.ERR_BACKPRESSURE``


class Origin(enum.Enum):
    """Where a message `Delivery.not_local` receives comes from."""

    #: An agent's ``send``, from a worker thread: rate-limited where it turns into dead letters.
    AGENT = "agent"
    #: A message the loop thread delivers: a due timer, or the messaging layer's own.
    LOOP = "loop"


class MessageJournal(Protocol):
    """Records messages on the hot path (worker threads; must be cheap and never block long).

    ``sent`` is called before the message is queued (``receiver`` = the local agent it is
    queued for, None when it goes to `Delivery.not_local`); ``retract`` when it could not be
    queued after all (backpressure); ``handled`` after a handler returned 0; ``flush`` when a
    worker posts its events to the loop (with ``defer``: a batch still uncommitted takes the
    records when it commits).
    """

    def sent(self, conversation: str | None, data: bytes, receiver: str | None) -> None: ...
    def sent_remote(self, conversation: str | None, data: bytes, receiver: str, node: str) -> None:
        """A message for an agent on another ``node`` (only with `Delivery.locate`)."""
        ...

    def handled(self, receiver: str, data: bytes) -> None: ...
    def retract(self, data: bytes) -> None: ...
    def flush(self, *, block: bool = True, defer: bool = False) -> object:
        """Write what was recorded; ``defer``: leave it to a batch in flight, if any."""
        ...

    def hot_path(self) -> tuple[Callable[[tuple[Any, ...]], None], Sized, int]:
        """``(record, entries, flush_at)``: the inlined form of `sent` and `handled`.

        ``record((conversation, data, receiver))`` is `sent` and ``record((receiver, data))``
        is `handled`, minus the size check: the caller flushes when ``len(entries) >=
        flush_at`` after recording, or after recording a sent message of `LARGE_MESSAGE`
        bytes or more.
        """
        ...


class Delivery(Protocol):
    """What the runtime needs from the owner of message delivery (see the module docstring)."""

    @property
    def journal(self) -> MessageJournal | None: ...

    def not_local(self, receiver: str, data: bytes, origin: Origin) -> None:
        """Deliver a message no running local agent takes (event loop thread)."""
        ...


class LocalDelivery:
    """The default `Delivery` of a bare runtime: nothing recorded, the rest to ``external``.

    ``external(receiver, data)`` runs on the event loop thread; without it, messages for
    anything but a running local agent are dropped.
    """

    journal: MessageJournal | None = None

    def __init__(self, external: Callable[[str, bytes], None] | None = None) -> None:
        self._external = external

    def not_local(self, receiver: str, data: bytes, origin: Origin) -> None:
        if self._external is not None:
            self._external(receiver, data)
