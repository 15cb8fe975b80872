"""Persisted timers and the wall clock: a jump back does not stretch a timer's wait."""

from __future__ import annotations

import json
import time

from caxton.agents import DeployRequest, StoredTimers
from caxton.clock import ManualClock
from caxton.node import Node
from tests.support import eventually, wat

from .conftest import StartNode

DAY = 86_400.0


async def _count(node: Node, name: str) -> bytes | None:
    return await node.storage.kv.get(name, b"count")


async def test_a_timer_rearmed_after_the_clock_jumped_back_a_day_waits_its_delay(
    start_node: StartNode,
) -> None:
    """Attack 11: a timer stored while the wall clock was a day ahead fired 26 h late."""
    node = await start_node()
    await node.agents.deploy(DeployRequest(name="counter", wasm=wat("kvcount")))
    await node.agents.deploy(DeployRequest(name="quiet", wasm=wat("nop")))
    # `quiet` schedules a message to `counter` one second ahead while the wall clock reads a
    # day ahead (the clock is then set back: NTP, an operator, a VM resumed).
    clock = ManualClock(time.monotonic(), wall=time.time() + DAY)
    ahead = StoredTimers(node.storage, clock=clock)
    body = json.dumps({"receiver": "counter", "sender": "quiet", "performative": "inform"})
    ahead.add(1, clock.monotonic() + 1.0, "counter", body.encode())
    # Written behind: the writer commits in order, so once a later write is in, so is the row.
    await node.storage.write(lambda conn: None)
    (row,) = await node.storage.scheduled.list_all("quiet")
    assert row.due_at > time.time() + DAY - 60
    await node.aclose()

    node = await start_node()
    await eventually(lambda: _count(node, "counter"), what="the timer fired within its delay")
    assert await _count(node, "counter") == b"1"
    assert await node.storage.scheduled.list_all() == []


async def test_a_timer_row_of_an_older_version_still_fires(start_node: StartNode) -> None:
    node = await start_node()
    await node.agents.deploy(DeployRequest(name="counter", wasm=wat("kvcount")))
    await node.agents.deploy(DeployRequest(name="quiet", wasm=wat("nop")))
    body = json.dumps({"receiver": "counter", "sender": "quiet", "performative": "inform"})
    await node.storage.scheduled.add(
        "quiet", time.time() + 0.5, json.dumps("counter").encode() + b"\n" + body.encode()
    )
    await node.aclose()
    node = await start_node()
    await eventually(lambda: _count(node, "counter"), what="the timer fired")
