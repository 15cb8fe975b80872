"""The forwarder stops when closed, even when a wake-up arrives with the cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from pathlib import Path

from caxton.cluster.forwarder import Forwarder
from caxton.storage import Storage
from caxton.storage.outbox import OutboxEntry


async def never(node: str, entries: Sequence[OutboxEntry]) -> Collection[int]:
    return ()


async def test_a_wake_up_at_close_does_not_keep_the_forwarder_running(tmp_path: Path) -> None:
    async with await Storage.open(tmp_path / "local.db") as storage:
        for spins in range(6):  # the wake-up lands at different points of the close
            forwarder = Forwarder(storage.outbox, never)
            forwarder.start()
            await asyncio.sleep(0.01)  # waiting for a wake-up
            forwarder.wake()
            for _ in range(spins):
                await asyncio.sleep(0)
            async with asyncio.timeout(2):
                await forwarder.aclose()
