"""`GroupCommit` joins a batch's outbox rows (messages for other nodes) to the group write."""

from __future__ import annotations

import asyncio
from pathlib import Path

from caxton.messaging.intake import GroupCommit
from caxton.storage import Storage
from caxton.storage.messages import MessageBatch


async def test_outbox_rows_committed_in_one_group_with_the_history(tmp_path: Path) -> None:
    async with await Storage.open(tmp_path / "local.db") as storage:
        group = GroupCommit(storage)
        first = group.commit(
            MessageBatch(chunks=[("c1", 1, b"[{}]")], outbox=[("m1", "n2", "far", b"{}")])
        )
        second = group.commit(MessageBatch(outbox=[("m2", "n2", "far", b"{}")]))
        await asyncio.gather(first, second)
        entries = await storage.outbox.entries()
        assert [(e.message_id, e.node, e.receiver) for e in entries] == [
            ("m1", "n2", "far"),
            ("m2", "n2", "far"),
        ]
        assert (await storage.messages.conversation("c1"))[2] == 1
