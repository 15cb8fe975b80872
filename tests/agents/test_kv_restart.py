"""A node restarts without reading its agents' key/value stores (H4: 993,405 keys, 160 s)."""

from __future__ import annotations

import sqlite3
import time
import tracemalloc
from pathlib import Path

from caxton.agents import DeployRequest
from tests.support import message, wat

from .conftest import Client, StartNode

KEYS = 200_000
VALUE = b"v" * 200  # 200k keys of 200 bytes: about 45 MB of key/value data


async def test_a_restart_reads_none_of_the_keys_an_agent_stored(
    start_node: StartNode, data_dir: Path, client: Client
) -> None:
    node = await start_node()
    await node.agents.deploy(DeployRequest(name="counter", wasm=wat("kvcount")))
    assert await client.ask(node, "counter") == 1
    await node.aclose()
    with sqlite3.connect(data_dir / "local.db") as db:
        db.executemany(
            "INSERT INTO kv(name, key, value) VALUES ('counter', ?, ?)",
            ((f"key-{i:07d}".encode(), VALUE) for i in range(KEYS)),
        )

    tracemalloc.start()
    try:
        t0 = time.monotonic()
        node = await start_node()
        started = time.monotonic() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024, f"starting took {peak / 2**20:.0f} MiB of Python memory"
    assert started < 5.0
    # The agent reads its keys when it asks for them.
    assert await client.ask(node, "counter") == 2
    assert await node.storage.kv.get("counter", b"key-0199999") == VALUE


async def test_kv_reads_its_own_writes_through_sqlite_when_nothing_is_cached(
    start_node: StartNode, client: Client
) -> None:
    """Writes are committed behind the agent's back: a read must still see the last one."""
    node = await start_node(agent_kv_cache_size=64)
    await node.agents.deploy(DeployRequest(name="counter", wasm=wat("kvcount")))
    for _ in range(40):
        node.runtime.deliver_nowait("counter", message("counter"))
    counts = [(await client.reply())["content"] for _ in range(40)]
    assert counts == list(range(1, 41))
    assert await node.storage.kv.get("counter", b"count") == b"40"
