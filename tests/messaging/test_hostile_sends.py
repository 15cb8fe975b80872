"""Hostile senders in a node with a real SQLite file, stopped and started again.

* a refused send (``-4``) leaves nothing behind that a restart would deliver (attack H2);
* sends to unknown names are budgeted per message and per agent, and their dead letters are
  rate-limited and counted (attack H3);
* messages accepted for a removed agent are dead-lettered, never delivered to a new agent of
  the same name after a restart (attack M4).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
import struct
import time
from collections import Counter
from pathlib import Path

import pytest

from caxton.agents import DeployRequest
from caxton.config import Config, CoordinationConfig
from caxton.messaging.journal import build_batch
from caxton.node import Node
from caxton.runtime import abi
from caxton.storage._connection import Connection
from tests.messaging.conftest import OPTIONS, Stack
from tests.support import eventually, fast_runtime, wat

pytestmark = pytest.mark.slow

CAPACITY = 16


def _config(path: Path, **runtime: object) -> Config:
    limits: dict[str, object] = {"mailbox_capacity": CAPACITY, "execution_timeout": 10.0}
    return Config(
        runtime=fast_runtime(**{**limits, **runtime}),
        coordination=CoordinationConfig(local_state_path=path),
    )


def _pending_and_history(path: Path) -> tuple[list[tuple[str, str]], set[str]]:
    """(message_id, receiver) of every pending delivery, and every message id in history."""
    with sqlite3.connect(path) as db:
        pending = db.execute("SELECT message_id, receiver FROM pending_deliveries").fetchall()
        history: set[str] = set()
        for (blob,) in db.execute("SELECT messages FROM conversation_chunks"):
            history.update(m["message_id"] for m in json.loads(blob))
    return pending, history


async def test_refused_sends_leave_no_pending_rows_and_a_restart_is_quick(tmp_path: Path) -> None:
    path = tmp_path / "local.db"
    node = Node(_config(path))
    await node.start()
    try:
        await node.agents.deploy(DeployRequest(name="amp", wasm=wat("amplify")))
        await node.messaging.submit({"receiver": "amp", "performative": "inform"}, client="t")

        # amp sends itself 4 messages per message: its mailbox is full, most sends refused.
        async def flooding() -> bool:
            return node.runtime.agent_statistics("amp").messages_handled > 10 * CAPACITY

        await eventually(flooding, what="amp flooded itself")
        handled = node.runtime.agent_statistics("amp").messages_handled
        assert handled > 10 * CAPACITY
    finally:
        await node.aclose()

    pending, history = _pending_and_history(path)
    # Only what was queued (or being handled) at the stop: each refused send was told -4 (the
    # old code left one row per refused send: 178,452 of them). How many are still queued
    # depends on how far the graceful stop drained amp's mailbox, none included.
    assert len(pending) <= CAPACITY + 1
    assert {mid for mid, _ in pending} <= history, "a refused message has a pending row"

    with sqlite3.connect(path) as db:
        (before,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM dead_letters").fetchone()
    started = time.monotonic()
    again = Node(_config(path))
    await asyncio.wait_for(again.start(), 20)
    try:
        assert time.monotonic() - started < 5
        letters, _ = await again.messaging.dead_letters(limit=10_000)
        # Every recovered delivery found room, though amp fills its mailbox again at once.
        assert [x for x in letters if x.id > before and x.reason == "mailbox_full"] == []
    finally:
        await again.aclose()
    pending, history = _pending_and_history(path)
    assert len(pending) <= CAPACITY + 1
    assert {mid for mid, _ in pending} <= history


def _counter(kv: dict[bytes, bytes], key: bytes) -> int:
    value: int = struct.unpack("<i", kv[key])[0]
    return value


async def test_sends_to_unknown_names_are_budgeted_per_message(tmp_path: Path) -> None:
    path = tmp_path / "local.db"
    node = Node(_config(path, max_sends_per_message=1000, max_dead_letters_per_second=100))
    await node.start()
    try:
        await node.agents.deploy(DeployRequest(name="flood", wasm=wat("sendflood")))
        await node.messaging.submit({"receiver": "flood", "performative": "inform"}, client="t")

        async def reported() -> bool:
            return b"rc" in await node.storage.kv.load("flood")

        await eventually(reported, within=30)
        kv = await node.storage.kv.load("flood")
        assert _counter(kv, b"ok") == 1000  # of 400,000 calls
        assert _counter(kv, b"rc") == abi.ERR_OVER_BUDGET == -7

        # 1000 dead letters owed; 100 a second are stored, the rest counted.
        async def all_owed() -> bool:
            _, stored = await node.messaging.dead_letters()
            return stored + node.messaging.router.dropped.get("unknown_receiver", 0) == 1000

        await eventually(all_owed, what="1000 dead letters were stored or counted")
        _, stored = await node.messaging.dead_letters()
        dropped = node.messaging.router.dropped.get("unknown_receiver", 0)
        assert 100 <= stored <= 200
        assert stored + dropped == 1000
        samples = {s[0]: s for s in node.messaging.metric_samples()}
        assert samples["dead_letters_dropped"][3] == dropped
        assert samples["agent_sends_over_budget"][3] == 400_000 - 1000
    finally:
        await node.aclose()


async def test_sends_to_unknown_names_are_budgeted_per_agent_and_second(tmp_path: Path) -> None:
    path = tmp_path / "local.db"
    config = _config(path, max_sends_per_message=1_000_000, max_external_sends_per_second=2000)
    node = Node(config)
    await node.start()
    try:
        await node.agents.deploy(DeployRequest(name="flood", wasm=wat("sendflood")))
        started = time.monotonic()
        await node.messaging.submit({"receiver": "flood", "performative": "inform"}, client="t")

        async def reported() -> bool:
            return b"rc" in await node.storage.kv.load("flood")

        await eventually(reported, within=30)
        windows = int(time.monotonic() - started) + 1
        kv = await node.storage.kv.load("flood")
        assert 2000 <= _counter(kv, b"ok") <= 2000 * windows
        assert _counter(kv, b"rc") == abi.ERR_OVER_BUDGET
    finally:
        await node.aclose()


async def test_a_removed_agents_messages_are_dead_lettered_not_given_to_its_namesake(
    tmp_path: Path,
) -> None:
    path = tmp_path / "local.db"
    config = _config(path, execution_timeout=1.0)
    node = Node(config)
    await node.start()
    try:
        await node.agents.deploy(DeployRequest(name="x", wasm=wat("spin")))
        accepted = [
            (
                await node.messaging.submit(
                    {"receiver": "x", "performative": "inform", "content": i}, client="t"
                )
            ).message_id
            for i in range(5)
        ]

        async def queued() -> bool:  # the first spins; four wait in the mailbox
            return node.runtime.agent_statistics("x").mailbox_depth == 4

        await eventually(queued, what="x runs one message, four wait")
        await node.agents.remove("x")
        # A new agent of the same name: it counts the messages it gets in kv.
        await node.agents.deploy(DeployRequest(name="x", wasm=wat("kvcount")))
        letters, _ = await node.messaging.dead_letters(limit=100)
        assert Counter(letter.message_id for letter in letters) == Counter(accepted)
        removed = [letter for letter in letters if letter.details == {"state": "removed"}]
        assert len(removed) >= 4
        assert all(letter.reason == "agent_not_running" for letter in removed)
    finally:
        await node.aclose()
    pending, _ = _pending_and_history(path)
    assert pending == []

    again = Node(config)
    await again.start()
    try:
        await asyncio.sleep(0.3)  # a while for anything that would arrive (none should)
        assert await again.storage.kv.load("x") == {}  # not one of the old messages arrived
        assert again.runtime.agent_statistics("x").messages_handled == 0
    finally:
        await again.aclose()


def test_a_retraction_removes_the_pending_row_in_its_own_batch_or_a_later_one() -> None:
    data = b'{"sender":"a","message_id":"m-1","conversation_id":"c","receiver":"b"}'
    same, _, _ = build_batch([("c", data, "b"), (data,)])
    assert (same.chunks, same.pending, same.retracted) == ([], [], [])
    # Another thread flushed between the send and its retraction: the next batch deletes it.
    first, _, _ = build_batch([("c", data, "b")])
    assert first.pending == [("m-1", "b", data)]
    later, _, _ = build_batch([(data,)])
    assert later.retracted == ["m-1"]


async def test_history_is_pruned_as_soon_as_a_flood_passes_a_quarter_of_its_budget(
    tmp_path: Path,
) -> None:
    options = dataclasses.replace(OPTIONS, max_history=4000, prune_interval=3600.0)
    async with Stack(tmp_path / "local.db", fast_runtime(execution_timeout=10.0), options) as stack:
        await stack.deploy("amp", "wat:amplify")
        await stack.messaging.submit({"receiver": "amp", "performative": "inform"}, client="t")

        async def flooded() -> bool:
            return stack.messaging.journal.sent_total > 20_000

        await eventually(flooded, within=20)
        await stack.runtime.stop_agent("amp")
        await asyncio.sleep(1.5)  # a check of the prune loop (once a second of loop time)

        def kept(c: Connection) -> int:
            return int(c.fetch_value("SELECT COALESCE(SUM(count), 0) FROM conversation_chunks"))

        # The budget, plus less than a quarter of it since the last prune (without the
        # quarter rule, the first prune comes after prune_interval: an hour).
        assert await stack.storage.read(kept) <= 4000 + 1000


async def test_replies_to_api_clients_are_not_limited_by_the_per_second_budget(
    tmp_path: Path,
) -> None:
    node = Node(_config(tmp_path / "local.db", max_external_sends_per_second=1))
    await node.start()
    try:
        await node.agents.deploy(DeployRequest(name="echo", wasm=wat("echo")))
        for i in range(20):
            accepted = await node.messaging.submit(
                {"receiver": "echo", "performative": "request", "content": i},
                client="t",
                wait=True,
            )
            assert accepted.reply is not None
            reply = await accepted.reply.wait(5.0)
            assert reply is not None
            assert reply["performative"] == "inform"
        assert node.runtime.sends_over_budget() == 0
    finally:
        await node.aclose()


async def test_dead_letters_are_capped_at_once_and_the_expired_counted(tmp_path: Path) -> None:
    options = dataclasses.replace(OPTIONS, max_dead_letters=400, prune_interval=3600.0)
    async with Stack(tmp_path / "local.db", fast_runtime(execution_timeout=10.0), options) as stack:
        await stack.deploy("flood", "wat:sendflood")
        await stack.messaging.submit({"receiver": "flood", "performative": "inform"}, client="t")

        async def owed() -> bool:  # 1000 sends to nobody, within the dead-letter rate
            return sum(stack.messaging.dead_letter_counts.values()) >= 1000

        await eventually(owed, within=20)
        await asyncio.sleep(1.5)  # a check of the prune loop (once a second of loop time)
        _, stored = await stack.messaging.dead_letters()
        assert stored <= 400
        assert stack.messaging.dead_letters_expired == 1000 - stored
        samples = {s[0]: s for s in stack.messaging.metric_samples()}
        assert samples["dead_letters_expired"][3] == 1000 - stored


async def test_deeply_nested_sends_are_refused_without_a_log_line_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A send nested deeper than the API allows gets -1 at once: no RecursionError, and no
    traceback per send (each one logged a full traceback: a log flood)."""
    node = Node(_config(tmp_path / "local.db"))
    await node.start()
    try:
        await node.agents.deploy(DeployRequest(name="deep", wasm=wat("deepsend")))
        with caplog.at_level(logging.DEBUG, logger="caxton"):
            await node.messaging.submit({"receiver": "deep", "performative": "inform"}, client="t")

            async def reported() -> bool:
                return b"c" in await node.storage.kv.load("deep")

            await eventually(reported, within=20)
        kv = await node.storage.kv.load("deep")
        assert _counter(kv, b"a") == abi.OK  # 100 levels: as deep as the API accepts
        assert _counter(kv, b"b") == abi.ERR_MALFORMED  # one level more
        assert _counter(kv, b"c") == abi.ERR_MALFORMED
        assert node.runtime.agent_statistics("deep").messages_handled == 1
    finally:
        await node.aclose()
    host = [r for r in caplog.records if r.name == "caxton.runtime.host"]
    assert host == []
    assert not [r for r in caplog.records if r.exc_info is not None]


async def test_a_removed_agents_timers_never_fire(tmp_path: Path) -> None:
    """Timers already armed in memory when an agent is removed are dropped with it: they
    reached a later agent of the same name (and kept its timer count)."""
    path = tmp_path / "local.db"
    node = Node(_config(path))
    await node.start()
    try:
        await node.agents.deploy(DeployRequest(name="x", wasm=wat("later")))
        await node.messaging.submit({"receiver": "x", "performative": "inform"}, client="t")

        async def armed() -> bool:
            return node.runtime.agent_statistics("x").messages_handled == 1

        await eventually(armed, within=5)  # a timer 500 ms ahead
        await node.agents.remove("x")
        await node.agents.deploy(DeployRequest(name="x", wasm=wat("kvcount")))
        await asyncio.sleep(1.2)  # past the old timer's due time
        assert node.runtime.agent_statistics("x").messages_handled == 0
        assert await node.storage.kv.load("x") == {}
        assert node.runtime._agents["x"].timers == 0
    finally:
        await node.aclose()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM scheduled").fetchone() == (0,)


async def test_a_large_message_is_written_to_the_history_at_once(tmp_path: Path) -> None:
    """A worker running an agent that sends itself ~200 KB messages recorded tens of them
    before its next flush: one history chunk held megabytes (the journal's memory too), and a
    byte budget below one chunk pruned the whole history. A large message is flushed at once."""
    async with Stack(tmp_path / "local.db", fast_runtime(execution_timeout=10.0), OPTIONS) as stack:
        await stack.deploy("big", "wat:bigamp")
        await stack.messaging.submit({"receiver": "big", "performative": "inform"}, client="t")

        async def flooded() -> bool:
            return stack.messaging.journal.sent_bytes > 40 * 1024 * 1024

        await eventually(flooded, within=20)
        await stack.runtime.stop_agent("big")

        def largest(c: Connection) -> int:
            sql = "SELECT COALESCE(MAX(length(messages)), 0) FROM conversation_chunks"
            return int(c.fetch_value(sql))

        # ~200 KB messages: a chunk holds one, or two when a flush of the loop came between.
        assert 0 < await stack.storage.read(largest) <= 3 * 210_000


async def test_history_of_large_messages_is_pruned_by_bytes(tmp_path: Path) -> None:
    """An agent sending itself ~200 KB messages grew the database by ~80 MB a second, pruned
    only at max_history messages (1,000,000 of them: ~200 GB)."""
    budget = 8 * 1024 * 1024
    options = dataclasses.replace(OPTIONS, max_history_bytes=budget, prune_interval=3600.0)
    async with Stack(tmp_path / "local.db", fast_runtime(execution_timeout=10.0), options) as stack:
        await stack.deploy("big", "wat:bigamp")
        await stack.messaging.submit({"receiver": "big", "performative": "inform"}, client="t")

        async def flooded() -> bool:
            return stack.messaging.journal.sent_bytes > 6 * budget

        await eventually(flooded, within=20)
        await stack.runtime.stop_agent("big")
        await asyncio.sleep(1.5)  # a check of the prune loop (once a second of loop time)

        def kept(c: Connection) -> int:
            sql = "SELECT COALESCE(SUM(length(messages)), 0) FROM conversation_chunks"
            return int(c.fetch_value(sql))

        # The budget, plus less than a quarter of it since the last prune.
        assert 0 < await stack.storage.read(kept) <= budget + budget // 4
