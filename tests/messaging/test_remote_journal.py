"""A send to an agent on another node: its outbox row commits with the history, before the
handled mark of the message whose handler sent it."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from pathlib import Path

from caxton.messaging.journal import Journal, build_batch
from caxton.storage import Storage
from caxton.storage.messages import MessageBatch
from caxton.wire.codec import encode


def _message(mid: str, receiver: str) -> bytes:
    return encode(
        {
            "sender": "ping",
            "receiver": receiver,
            "performative": "request",
            "message_id": mid,
            "conversation_id": "c1",
        }
    )


def test_a_remote_send_is_history_and_an_outbox_row_in_the_same_batch() -> None:
    trigger, out = _message("m0", "ping"), _message("m1", "pong")
    batch, sent, handled = build_batch([("c1", out, "pong", "b"), ("ping", trigger)])
    assert batch.outbox == [("m1", "b", "pong", out)]
    assert batch.chunks == [("c1", 1, b"[" + out + b"]")]
    assert batch.pending == []
    assert batch.done == [("m0", "ping")]  # written with (not before) the outbox row
    assert sent == [out]
    assert handled == 1


async def test_the_journal_writes_the_row_and_then_wakes_the_forwarder(tmp_path: Path) -> None:
    async with await Storage.open(tmp_path / "local.db") as storage:
        woken = threading.Event()
        written: list[MessageBatch] = []

        def write(batch: MessageBatch) -> Future[None]:
            written.append(batch)
            return storage.messages.write_nowait(batch)

        journal = Journal(write)
        journal.outboxed = lambda entries: woken.set()
        out = _message("m1", "pong")
        journal.sent_remote("c1", out, "pong", "b")
        flushed = journal.flush(block=False)
        assert flushed is not None
        await asyncio.wrap_future(flushed)
        await asyncio.to_thread(woken.wait, 5)
        assert woken.is_set()
        [entry] = await storage.outbox.entries()
        assert (entry.message_id, entry.node, entry.receiver, entry.body) == (
            "m1",
            "b",
            "pong",
            out,
        )
        # A batch without outbox rows wakes nobody.
        woken.clear()
        journal.sent("c1", _message("m2", "local"), None)
        again = journal.flush(block=False)
        assert again is not None
        await asyncio.wrap_future(again)
        assert not woken.is_set()
