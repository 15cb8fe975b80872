"""Idle flushes while the writer is busy: one larger batch after the commit, not many small
ones (the workers going idle after every message must not flood the writer)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from caxton.messaging.journal import Journal
from caxton.storage.messages import MessageBatch
from caxton.wire.codec import encode
from tests.messaging.conftest import Stack


def _message(mid: str) -> bytes:
    return encode(
        {
            "sender": "ping",
            "receiver": "pong",
            "performative": "request",
            "message_id": mid,
            "conversation_id": "c1",
        }
    )


class _Writer:
    """A storage writer whose commits the test completes by hand."""

    def __init__(self) -> None:
        self.batches: list[MessageBatch] = []
        self.futures: list[Future[None]] = []

    def __call__(self, batch: MessageBatch) -> Future[None]:
        future: Future[None] = Future()
        self.batches.append(batch)
        self.futures.append(future)
        return future

    def commit(self, index: int) -> None:
        self.futures[index].set_result(None)


def test_deferred_flushes_wait_for_the_commit_then_go_as_one_batch() -> None:
    writer = _Writer()
    journal = Journal(writer)
    journal.sent("c1", _message("m0"), None)
    assert journal.flush(defer=True) is not None  # the writer is idle: written at once
    for i in range(1, 4):  # three workers go idle while that batch is uncommitted
        journal.sent("c1", _message(f"m{i}"), None)
        assert journal.flush(defer=True) is None
    assert len(writer.batches) == 1
    writer.commit(0)  # its commit flushes what waited, in one batch
    assert len(writer.batches) == 2
    [(_, count, _)] = writer.batches[1].chunks
    assert count == 3
    assert len(journal) == 0


def test_a_flush_that_is_not_deferred_goes_at_once() -> None:
    writer = _Writer()
    journal = Journal(writer)
    journal.sent("c1", _message("m0"), None)
    journal.flush(defer=True)
    journal.sent("c1", _message("m1"), None)
    assert journal.flush(block=False) is not None  # `written()` and shutdown need this
    assert len(writer.batches) == 2


def test_entries_deferred_to_a_failed_commit_are_still_written() -> None:
    writer = _Writer()
    journal = Journal(writer)
    journal.sent("c1", _message("m0"), None)
    journal.flush(defer=True)
    journal.sent("c1", _message("m1"), None)
    assert journal.flush(defer=True) is None
    writer.futures[0].set_exception(OSError("disk full"))
    assert journal.failed_flushes == 1
    assert len(writer.batches) == 2  # m1 did not wait for a commit that never comes


def test_a_commit_racing_a_deferring_worker_strands_nothing() -> None:
    """Workers defer while commits complete on another thread: every entry is written."""
    writer = _Writer()
    journal = Journal(writer)
    stop = threading.Event()

    def committer() -> None:
        done = 0
        while not stop.is_set() or done < len(writer.futures):
            if done < len(writer.futures):
                writer.commit(done)
                done += 1

    thread = threading.Thread(target=committer)
    thread.start()
    try:
        for i in range(2000):
            journal.sent("c1", _message(f"m{i}"), None)
            journal.flush(defer=True)
    finally:
        stop.set()
        thread.join(10)
    # what the timer does at the latest (nothing is in flight any more: its deferred flush writes)
    journal.flush(block=False, defer=True)
    written = sum(count for batch in writer.batches for _, count, _ in batch.chunks)
    assert written == 2000


async def test_the_flush_timer_queues_nothing_behind_a_busy_writer(stack: Stack) -> None:
    """While the writer is busy, the event loop's flush timer leaves the journal to the commit
    in flight instead of queueing one batch per tick: otherwise a flooding agent's entries never
    reach the workers' blocking flush (no backpressure) and an API commit waits behind
    seconds of queued batches."""
    journal = stack.messaging.journal
    release = threading.Event()
    gate = stack.storage.write_nowait(lambda conn: release.wait(10))
    journal.flush()  # nothing recorded yet: no batch
    journal.sent("c1", _message("m0"), None)
    first = journal.flush(block=False)  # one batch behind the gate
    assert first is not None
    try:
        for i in range(1, 21):  # ten flush intervals of recording
            journal.sent("c1", _message(f"m{i}"), None)
            await asyncio.sleep(stack.options.flush_interval / 2)
        assert stack.storage.statistics().queue_depth <= 2  # the gate and the first batch
        assert len(journal) == 20  # kept for the commit in flight
    finally:
        release.set()
    await asyncio.wrap_future(gate)
    await asyncio.wrap_future(first)
    await stack.messaging.history.written()
    messages, total = await stack.messaging.history.conversation("c1", limit=100)
    assert total == 21
    assert [m["message_id"] for m in messages] == [f"m{i}" for i in range(21)]
