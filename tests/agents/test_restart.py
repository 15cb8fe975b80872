"""Restarts: a clean node restart and a kill -9 bring every agent back in its state."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import wasmtime

from caxton.agents import DeployRequest
from tests.support import ROOT, eventually, example, message, wat

from .conftest import Client, StartNode


async def test_clean_restart_brings_agents_back_in_their_states(
    start_node: StartNode, client: Client
) -> None:
    node = await start_node()
    agents = node.agents
    for name, module in (("echo", "echo"), ("counter", "counter"), ("off", "echo")):
        await agents.deploy(DeployRequest(name=name, wasm=example(module)))
    await agents.deploy(DeployRequest(name="big", wasm=wat("bigmem")))
    await agents.deploy(DeployRequest(name="shout", wasm=example("shout"), env={"X": "1"}))
    await agents.upgrade("shout", example("shout"))
    assert [await client.ask(node, "counter", {}) for _ in range(2)][-1]["kv_count"] == 2
    assert [await client.ask(node, "big") for _ in range(3)] == [1, 2, 3]
    await agents.stop("off")
    assert await node.runtime.hibernate("big")
    await node.aclose()

    node = await start_node()
    states = {a.name: a.state for a in (await node.agents.list())[0]}
    assert states == {
        "big": "hibernated",
        "counter": "running",
        "echo": "running",
        "off": "stopped",
        "shout": "running",
    }
    shout = await node.agents.get("shout")
    assert (shout.version, shout.versions, shout.env) == (2, (1, 2), {"X": "1"})
    counter = await node.agents.get("counter")
    assert counter.messages_handled == 2  # counters continue from what was persisted
    # kv survives a restart, linear memory does not (fresh instance)
    assert await client.ask(node, "counter", {}) == {"memory_count": 1, "kv_count": 3}
    # the hibernated agent is restored from its snapshot: its memory counter goes on
    assert await client.ask(node, "big") == 4
    assert (await node.agents.get("big")).state == "running"
    assert await client.ask(node, "echo", "hi") == "hi"
    await node.agents.start("off")
    assert await client.ask(node, "off", "on") == "on"
    await node.aclose()
    node = await start_node()
    assert (await node.agents.get("counter")).messages_handled == 3


async def test_a_hibernated_agent_keeps_its_globals_across_a_restart(
    start_node: StartNode, client: Client
) -> None:
    node = await start_node()
    await node.agents.deploy(DeployRequest(name="glob", wasm=wat("globalcount")))
    assert [await client.ask(node, "glob") for _ in range(3)] == [1, 2, 3]
    assert await node.runtime.hibernate("glob")
    await node.aclose()

    node = await start_node()
    assert (await node.agents.get("glob")).state == "hibernated"
    assert [await client.ask(node, "glob") for _ in range(2)] == [4, 5]
    assert (await node.agents.get("glob")).failures == 0


async def test_a_snapshot_stored_before_globals_were_kept_still_restores(
    start_node: StartNode, client: Client
) -> None:
    node = await start_node()
    await node.agents.deploy(DeployRequest(name="big", wasm=wat("bigmem")))
    assert [await client.ask(node, "big") for _ in range(3)] == [1, 2, 3]
    assert await node.runtime.hibernate("big")
    await node.aclose()

    node = await start_node()
    old_meta = json.dumps({"pages": 16, "version": 1})  # what earlier versions stored
    await node.storage.write(
        lambda c: c.execute("UPDATE snapshots SET meta = ? WHERE name = 'big'", (old_meta,))
    )
    assert await client.ask(node, "big") == 4  # its state is in memory: the memory is back


async def test_idle_hibernation_runs_in_the_node(start_node: StartNode, client: Client) -> None:
    node = await start_node(agent_idle_timeout=0.05, gc_interval=0.05)
    await node.agents.deploy(DeployRequest(name="big", wasm=wat("bigmem")))
    assert await client.ask(node, "big") == 1

    async def hibernated() -> bool:
        return (await node.agents.get("big")).state == "hibernated"

    await eventually(hibernated)
    await node.storage.write(lambda conn: None)  # snapshots are written behind
    assert await node.storage.snapshots.load("big") is not None
    assert await client.ask(node, "big") == 2


TICK = b'{"receiver":"client","performative":"inform","content":"tick"}'
_TICK_WAT = TICK.decode().replace('"', '\\"')
# Each message schedules TICK to the client 700 ms later.
SCHEDULER = f"""
(module
  (import "caxton" "schedule" (func $schedule (param i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{_TICK_WAT}")
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param i32 i32) (result i32)
    (call $schedule (i64.const 700) (i32.const 16) (i32.const {len(TICK)}))))
"""


async def test_persisted_timers_fire_after_a_restart(start_node: StartNode, client: Client) -> None:
    wasm = bytes(wasmtime.wat2wasm(SCHEDULER))
    node = await start_node()
    await node.agents.deploy(DeployRequest(name="timer", wasm=wasm))
    await node.runtime.deliver("timer", message("timer"))

    async def stored() -> bool:
        return bool(await node.storage.scheduled.list_all())

    await eventually(stored)
    await node.aclose()
    assert client.outbox.empty()

    node = await start_node()
    reply = await client.reply(within=5.0)
    assert (reply["content"], reply["sender"]) == ("tick", "timer")

    async def fired() -> bool:
        return not await node.storage.scheduled.list_all()

    await eventually(fired)


async def test_kill_9_loses_no_agent(data_dir: Path, start_node: StartNode, client: Client) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(  # noqa: ASYNC220 (the test owns it and kills it)
        [sys.executable, "-m", "tests.agents.killed_node", str(data_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert json.loads(line)["counts"][-1] == {"memory_count": 3, "kv_count": 3}
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    node = await start_node()
    states = {a.name: a.state for a in (await node.agents.list())[0]}
    assert states == {"counter": "running", "echo": "running", "shout": "running"}
    assert await client.ask(node, "counter", {}) == {"memory_count": 1, "kv_count": 4}
    assert await client.ask(node, "echo", [1]) == [1]
    assert await client.ask(node, "shout", "ok") == "OK"
