"""The journal: how agent-to-agent messages become durable without slowing the hot path.

--- What happens per message

The wasm workers call `Journal.sent` for every message an agent sends (the conversation id the
envelope code already knows, the stamped bytes, the local receiver) *before* the message enters
the receiver's mailbox, and `Journal.handled` after a handler returned successfully. Both only
append a small tuple to one shared deque (atomic under the GIL, ~0.1 µs). Nothing is decoded
again and nothing waits.

--- What a flush writes

`flush` (called by a worker when it goes idle or posts its events, by the hot path every
`FLUSH_AT` entries, and by a timer on the event loop) drains the deque in order and turns it into
ONE storage write (`MessageBatch`). A worker going idle defers to a batch still uncommitted: its
commit flushes what waits (group commit), so workers that go idle after every message (messages
crossing to other nodes) give the writer a few larger batches instead of one per message. A
flush writes each conversation's new messages as one JSON-array row, a
pending row for every delivery not yet handled, and a delete for every handled delivery written
as pending by an earlier flush. A message sent and handled between two flushes (the usual case:
the receiver runs right after the sender on the same worker) costs no pending row at all: the
handled mark is matched to the sent entry by object identity of the bytes.

--- The guarantee, exactly

Messages accepted by the API are committed before `submit` returns (not through here). Messages
agents send are committed by their flush, asynchronously. Flushes are submitted to the storage
writer in deque order (under a lock) and committed in that order, and a handler's sends are
appended before its handled mark. Therefore, if the handled mark of message M is committed, so
is every message M's handler sent. After a ``kill -9``, `Messaging.recover` delivers every
pending delivery again; a message that was lost because its flush never committed was sent by
a handler whose own handled mark was not committed either, so that handler runs again and
sends it again (at least once, assuming handlers that send the same messages when they see the
same input; kv writes made by the first run are not rolled back). Duplicates carry the same
``message_id`` when they are the same delivery, and a fresh one when a handler re-sends.

--- Messages for other nodes

With a cluster, a message an agent sends to an agent on another node is recorded with
`Journal.sent_remote`: its flush writes the outbox row (`MessageBatch.outbox`) with the
history, so by the argument above the row is committed no later than the handled mark of the
message whose handler sent it. ``outboxed`` (set by the cluster) is called once such a batch
is committed, on the writer thread, to wake the forwarder.

--- Memory

At most `MAX_INFLIGHT` flushes wait for the writer; a flush on a worker thread beyond that
blocks until the oldest commits (backpressure from the disk to the agents instead of an
unbounded queue). The deque is drained at least every `FLUSH_AT` entries.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from itertools import repeat, starmap
from typing import Any

from caxton.runtime.delivery import LARGE_MESSAGE
from caxton.storage.messages import MessageBatch
from caxton.storage.outbox import OutboxEntry
from caxton.wire.header import message_id_of

__all__ = ["FLUSH_AT", "MAX_INFLIGHT", "Journal", "build_batch"]

#: Entries after which the hot path flushes by itself.
FLUSH_AT = 4096
#: Flushes waiting for the storage writer before a worker's flush blocks.
MAX_INFLIGHT = 4


def build_batch(items: list[tuple[Any, ...]]) -> tuple[MessageBatch, list[bytes], int]:
    """Drained journal entries as a `MessageBatch`, the new messages, the handled marks count.

    One pass over the entries (this runs for every message at ~100k/s): the entry kinds are
    told apart by length once, and retractions (rare: a full mailbox) are applied afterwards
    by filtering, instead of a separate pre-pass over every entry looking for them.
    """
    chunks: dict[str, list[bytes]] = {}
    # (id(data), receiver) -> the sent entry itself (no new tuple per message).
    pending: dict[tuple[int, str], tuple[Any, ...]] = {}
    done: list[tuple[str, str]] = []
    sent: list[bytes] = []  # in journal order: the live stream publishes them in this order
    retracted: set[int] | None = None
    sent_entries = 0
    outbox: list[tuple[str, str, str, bytes]] = []
    # The previous entry's conversation and its chunk list: consecutive messages of one
    # conversation (the usual case) skip the dict lookup. Compared by identity, which is only
    # a shortcut: a miss falls back to the lookup by value.
    last_conversation: object = None
    last_chunk: list[bytes] = []
    pending_pop = pending.pop
    sent_append = sent.append
    for entry in items:
        n = len(entry)
        if n == 3:
            sent_entries += 1
            conversation, data, receiver = entry
            if conversation is not None:
                sent_append(data)
                if conversation is last_conversation:
                    last_chunk.append(data)
                else:
                    same = chunks.get(conversation)
                    if same is None:
                        same = chunks[conversation] = [data]
                    else:
                        same.append(data)
                    last_conversation, last_chunk = conversation, same
            if receiver is not None:
                pending[(id(data), receiver)] = entry
        elif n == 4:  # `Journal.sent_remote`: history, and an outbox row
            sent_entries += 1
            conversation, data, receiver, node = entry
            if conversation is not None:
                sent_append(data)
                same = chunks.get(conversation)
                if same is None:
                    chunks[conversation] = [data]
                else:
                    same.append(data)
                last_conversation = None
            mid = message_id_of(data)
            if mid is not None:
                outbox.append((mid, node, receiver, data))
        elif n == 2:
            receiver, data = entry
            if pending_pop((id(data), receiver), None) is None:
                mid = message_id_of(data)
                if mid is not None:
                    done.append((mid, receiver))
        else:
            if retracted is None:
                retracted = set()
            retracted.add(id(entry[0]))
    handled = len(items) - sent_entries - (0 if retracted is None else _count_retractions(items))
    batch = MessageBatch()
    if retracted:  # a retracted message is neither history nor pending (see `Journal.retract`)
        sent = [d for d in sent if id(d) not in retracted]
        for conversation, same in list(chunks.items()):
            kept = [d for d in same if id(d) not in retracted]
            if kept:
                chunks[conversation] = kept
            else:
                del chunks[conversation]
        for key in [key for key in pending if key[0] in retracted]:
            del pending[key]
        batch.retracted = _retracted_earlier(items)
    for conversation, same in chunks.items():
        batch.chunks.append((conversation, len(same), b"[" + b",".join(same) + b"]"))
    for _, data, receiver in pending.values():
        mid = message_id_of(data)
        if mid is not None:
            batch.pending.append((mid, receiver, data))
    batch.done = done
    batch.outbox = outbox
    return batch, sent, handled


def _count_retractions(items: list[tuple[Any, ...]]) -> int:
    return sum(1 for entry in items if len(entry) == 1)


def _retracted_earlier(items: list[tuple[Any, ...]]) -> list[str]:
    """The message ids of retractions whose sent entry an earlier flush already wrote.

    Another thread may flush between a `Journal.sent` and its `Journal.retract`: then the
    pending row is in storage already, and this batch deletes it (by message id: a retracted
    message was queued for nobody).
    """
    sent_here = {id(entry[1]) for entry in items if len(entry) == 3}
    ids: list[str] = []
    for entry in items:
        if len(entry) == 1 and id(entry[0]) not in sent_here:
            mid = message_id_of(entry[0])
            if mid is not None:
                ids.append(mid)
    return ids


class Journal:
    """The shared buffer of sent and handled messages (see the module docstring)."""

    def __init__(
        self,
        write: Callable[[MessageBatch], Future[None]],
        *,
        listener: Callable[[list[bytes]], None] | None = None,
        flush_at: int = FLUSH_AT,
        max_inflight: int = MAX_INFLIGHT,
    ) -> None:
        """``write`` submits a batch to storage; ``listener`` is called (on the flushing
        thread) with each flush's new messages."""
        self._write = write
        self._listener = listener
        self._queue: deque[tuple[Any, ...]] = deque()
        self._append = self._queue.append
        self._flush_at = flush_at
        self._max_inflight = max_inflight
        self._lock = threading.Lock()
        self._inflight: deque[Future[None]] = deque()
        self.sent_total = 0
        #: Bytes of the messages counted in `sent_total`.
        self.sent_bytes = 0
        self.handled_total = 0
        self.flushes = 0
        self.failed_flushes = 0
        #: Called (on the writer thread) with the outbox rows a batch added, once committed.
        self.outboxed: Callable[[list[OutboxEntry]], None] | None = None
        #: Set by the cluster to send messages for other nodes before they commit: ``record``
        #: takes (body, receiver, node) from `sent_remote`; ``ready()`` is called by `flush`
        #: when something was recorded since its last call.
        self.early: tuple[Callable[[tuple[bytes, str, str]], None], Callable[[], None]] | None = (
            None
        )
        self._early_waiting = False

    # -- the hot path (worker threads) --------------------------------------------------------

    def sent(self, conversation: str | None, data: bytes, receiver: str | None) -> None:
        """Record one sent message (``receiver``: the local agent it is queued for, if any)."""
        self._append((conversation, data, receiver))
        if len(self._queue) >= self._flush_at or len(data) >= LARGE_MESSAGE:
            self.flush()

    def sent_remote(self, conversation: str | None, data: bytes, receiver: str, node: str) -> None:
        """Record one message for ``receiver`` on another ``node``: history (when
        ``conversation`` is given) and an outbox row, in the next flush."""
        early = self.early
        if early is not None:  # first: it is recorded there before its row can commit
            early[0]((data, receiver, node))
            self._early_waiting = True
        self._append((conversation, data, receiver, node))
        if len(self._queue) >= self._flush_at or len(data) >= LARGE_MESSAGE:
            self.flush()

    def handled(self, receiver: str, data: bytes) -> None:
        """Record that ``receiver`` handled ``data`` (or that it will never be queued)."""
        self._append((receiver, data))
        if len(self._queue) >= self._flush_at:
            self.flush()

    def hot_path(self) -> tuple[Callable[[tuple[Any, ...]], None], deque[tuple[Any, ...]], int]:
        """``(record, entries, flush_at)`` for workers that inline `sent` and `handled`.

        ``record`` is the deque's own ``append`` (atomic under the GIL, like `sent`), so a
        worker records a message with one C call instead of two Python calls; it must call
        `flush` itself once ``len(entries) >= flush_at``, exactly as `sent` would.
        """
        return self._append, self._queue, self._flush_at

    def retract(self, data: bytes) -> None:
        """Forget a message recorded by `sent` that was not sent after all (backpressure).

        The sender was told it failed, so nothing of it may stay: no history and no pending
        row (a pending row would be delivered again after a restart), also when a flush
        wrote the `sent` entry before this call.
        """
        self._append((data,))

    # -- flushing -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._queue)

    def flush(self, *, block: bool = True, defer: bool = False) -> Future[None] | None:
        """Write everything recorded so far as one batch; the future of its commit.

        With ``block`` (worker threads), waits while more than `MAX_INFLIGHT` earlier batches
        are uncommitted; the event loop passes ``block=False``. With ``defer`` (a worker going
        idle, the timer), nothing is submitted while an earlier batch is still uncommitted:
        that batch's commit flushes what waits (group commit), so a busy writer gets one
        larger batch instead of many small ones. Returns None when nothing was submitted.
        """
        if self._early_waiting:  # messages for other nodes may go before they commit
            self._early_waiting = False
            early = self.early
            if early is not None:
                early[1]()
        with self._lock:
            return self._flush_locked(block, defer)

    def _flush_locked(self, block: bool, defer: bool) -> Future[None] | None:
        queue = self._queue
        count = len(queue)
        if not count:
            return None
        inflight = self._inflight
        while inflight and inflight[0].done():
            inflight.popleft()
        if defer and inflight:
            return None  # the oldest batch's commit flushes these (`_committed`)
        # Exactly ``count`` entries from the left, in one C-level loop (workers may append on
        # the right meanwhile; only the flusher pops, under ``_lock``).
        items = list(starmap(queue.popleft, repeat((), count)))
        batch, sent, handled = build_batch(items)
        self.sent_total += len(sent)
        self.sent_bytes += sum(map(len, sent))
        self.handled_total += handled
        self.flushes += 1
        future = self._write(batch)
        future.add_done_callback(lambda done: self._committed(done, batch))
        inflight.append(future)
        if block:
            while len(inflight) > self._max_inflight:
                oldest = inflight.popleft()
                oldest.exception()  # waits; failures are counted by the callback
        listener = self._listener
        if listener is not None and sent:
            listener(sent)
        return future

    def _committed(self, future: Future[None], batch: MessageBatch) -> None:
        """A batch's write ended (writer thread): count a failure, or hand its outbox rows to
        `outboxed`; then flush what was deferred to it.

        The lock is only tried: its holder is flushing (and takes what waits) or deferring to
        a batch still in flight, whose own commit comes back here.
        """
        outboxed = self.outboxed
        if future.exception() is not None:
            self.failed_flushes += 1
        elif batch.enqueued and outboxed is not None:
            outboxed(batch.enqueued)
        if self._queue and self._lock.acquire(blocking=False):
            try:
                self._flush_locked(False, True)
            finally:
                self._lock.release()

    def wait_committed(self, timeout: float | None = None) -> None:
        """Flush and block until every batch so far is committed (threads, not the loop)."""
        self.flush()
        with self._lock:
            waiting = list(self._inflight)
        for future in waiting:
            future.exception(timeout)
