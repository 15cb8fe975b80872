"""Hibernation keeps linear memory and globals; idle and memory-pressure policies; upgrades."""

from __future__ import annotations

import asyncio
import dataclasses
import functools

import pytest

from caxton.clock import ManualClock
from caxton.errors import AgentStartFailed
from caxton.runtime import AgentSpec, AgentState, Engine, MemorySnapshots, Runtime
from caxton.runtime.scheduling.maintenance import Candidate, choose_hibernations
from tests.support import FAST, message, wat

from .conftest import Deploy, Recorder, taken


async def count(runtime: Runtime, recorder: Recorder, name: str) -> int:
    runtime.deliver_nowait(name, message(name))
    content = (await recorder.reply())["content"]
    assert isinstance(content, int)
    return content


async def test_hibernate_and_restore_keep_the_memory_counter(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    await deploy("big", wat("bigmem"))
    assert [await count(runtime, recorder, "big") for _ in range(3)] == [1, 2, 3]
    assert await runtime.hibernate("big")
    stats = runtime.agent_statistics("big")
    assert (stats.state, stats.memory_bytes) == (AgentState.HIBERNATED, 0)
    assert isinstance(runtime.snapshots, MemorySnapshots)
    assert len(runtime.snapshots.data["big"].memory) == 1 << 20
    assert await count(runtime, recorder, "big") == 4
    assert runtime.agent_statistics("big").state is AgentState.RUNNING
    assert "big" not in runtime.snapshots.data
    assert ("big", AgentState.HIBERNATED) in recorder.states
    assert runtime.statistics().hibernations == 1


async def test_restore_writes_zero_pages_over_the_modules_data(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    """Snapshots keep only non-zero pages; a page the agent zeroed must not come back."""
    await deploy("data", wat("datapage"))
    assert [await count(runtime, recorder, "data") for _ in range(2)] == [1, 0]
    assert await runtime.hibernate("data")
    assert isinstance(runtime.snapshots, MemorySnapshots)
    assert 1 not in runtime.snapshots.data["data"].data  # page 1 is all zero now: not kept
    assert await count(runtime, recorder, "data") == 0  # not the data segment's 1 again


async def test_hibernate_and_restore_keep_every_mutable_global(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    """State kept in globals the module does not export (as AssemblyScript keeps it) comes
    back bit for bit: an i32 counter, an i64, a NaN with a payload and -0.0."""
    await deploy("glob", wat("globalcount"))
    assert [await count(runtime, recorder, "glob") for _ in range(3)] == [1, 2, 3]
    assert await runtime.hibernate("glob")
    assert isinstance(runtime.snapshots, MemorySnapshots)
    assert runtime.snapshots.data["glob"].globals == (
        (0, "i32", 3),
        (1, "i64", 3 << 33),
        (2, "f32", 0x7FA00001),
        (3, "f64", 1 << 63),
    )
    assert [await count(runtime, recorder, "glob") for _ in range(2)] == [4, 5]
    assert runtime.agent_statistics("glob").failures == 0
    assert await runtime.hibernate("glob")  # and again, from a restored instance
    assert await count(runtime, recorder, "glob") == 6


async def test_an_agent_whose_globals_cannot_be_saved_is_never_hibernated(
    engine: Engine, recorder: Recorder
) -> None:
    clock = ManualClock()
    config = dataclasses.replace(FAST, agent_idle_timeout=60.0)
    async with Runtime(
        config, engine=engine, events=recorder, external=recorder.external, clock=clock
    ) as runtime:
        compiled = await asyncio.to_thread(engine.compile, wat("v128global"))
        assert compiled.info.unsaved_state is not None
        assert "global 0 (v128)" in compiled.info.unsaved_state
        await runtime.start_agent(AgentSpec(name="vec"), compiled)
        assert not await runtime.hibernate("vec")
        clock.advance(61)
        assert await runtime.maintain() == []
        assert runtime.agent_statistics("vec").state is AgentState.RUNNING


async def test_a_control_operation_does_not_wait_behind_a_message_backlog(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    """Hibernation (like deploys and stops) jumps the queue of agents with messages."""
    await deploy("big", wat("bigmem"))
    await count(runtime, recorder, "big")
    spinners = [f"spin-{i}" for i in range(6)]
    for name in spinners:
        await deploy(name, wat("spin"))
    for name in spinners:  # each message runs into the 0.3 s execution timeout
        runtime.deliver_nowait(name, message(name))
    assert await runtime.hibernate("big")
    handled = sum(runtime.agent_statistics(n).failures for n in spinners)
    assert handled <= 2 * FAST.max_concurrent_executions  # not all six spins came first
    assert runtime.agent_statistics("big").state is AgentState.HIBERNATED
    for name in spinners:
        await runtime.stop_agent(name)


async def test_idle_agents_hibernate_and_lru_goes_first_under_pressure(
    engine: Engine, recorder: Recorder
) -> None:
    clock = ManualClock()
    config = dataclasses.replace(
        FAST, agent_idle_timeout=60.0, memory_limit=4 << 20, memory_pressure_threshold=0.5
    )
    async with Runtime(
        config, engine=engine, events=recorder, external=recorder.external, clock=clock
    ) as runtime:
        compiled = await asyncio.to_thread(engine.compile, wat("bigmem"))
        for name in ("a", "b", "c"):
            await runtime.start_agent(AgentSpec(name=name), compiled)
            clock.advance(1)
            assert await count(runtime, recorder, name) == 1
        # 3 MiB in use > 2 MiB threshold: the least recently used (a) goes
        assert await runtime.maintain() == ["a"]
        clock.advance(61)
        assert sorted(await runtime.maintain()) == ["b", "c"]
        assert runtime.statistics().agents_hibernated == 3
        assert await count(runtime, recorder, "a") == 2


def test_choose_hibernations_table() -> None:
    cands = [
        Candidate("old", 0.0, 100, busy=False),
        Candidate("mid", 50.0, 100, busy=False),
        Candidate("busy", 0.0, 100, busy=True),
        Candidate("new", 99.0, 100, busy=False),
    ]
    choose = functools.partial(
        choose_hibernations, cands, now=100.0, memory_limit=1000, pressure_threshold=0.8
    )
    assert choose(idle_timeout=60, memory_in_use=400, reclaim=True) == ["old"]
    assert choose(idle_timeout=60, memory_in_use=1000, reclaim=True) == ["old", "mid"]
    assert choose(idle_timeout=60, memory_in_use=1001, reclaim=True) == ["old", "mid", "new"]
    assert choose(idle_timeout=600, memory_in_use=1000, reclaim=False) == []


async def test_upgrade_runs_the_next_message_on_the_new_version(
    runtime: Runtime, deploy: Deploy, recorder: Recorder, engine: Engine
) -> None:
    await deploy("agent", wat("bigmem"))
    assert await count(runtime, recorder, "agent") == 1
    echo = await asyncio.to_thread(engine.compile, wat("echo"))
    stats = await runtime.upgrade_agent("agent", echo, 2)
    assert (stats.version, stats.state) == (2, AgentState.RUNNING)
    runtime.deliver_nowait("agent", message("agent", "v2"))
    assert (await recorder.reply())["content"]["content"] == "v2"


async def test_upgrade_waits_for_the_message_in_flight(
    runtime: Runtime, deploy: Deploy, recorder: Recorder, engine: Engine
) -> None:
    await deploy("agent", wat("spin"))
    runtime.deliver_nowait("agent", message("agent", "old"))
    await taken(runtime, "agent")
    echo = await asyncio.to_thread(engine.compile, wat("echo"))
    upgrade = asyncio.ensure_future(runtime.upgrade_agent("agent", echo, 2))
    runtime.deliver_nowait("agent", message("agent", "new"))
    assert (await recorder.failure())[2].cause == "deadline"  # old version, old message
    await upgrade
    assert (await recorder.reply())["content"]["content"] == "new"


async def test_failed_upgrade_keeps_the_old_version(
    runtime: Runtime, deploy: Deploy, recorder: Recorder, engine: Engine
) -> None:
    await deploy("agent", wat("echo"))
    bad = await asyncio.to_thread(engine.compile, wat("init_fail"))
    with pytest.raises(AgentStartFailed):
        await runtime.upgrade_agent("agent", bad, 2)
    assert runtime.agent_statistics("agent").version == 1
    runtime.deliver_nowait("agent", message("agent", "still"))
    assert (await recorder.reply())["content"]["content"] == "still"


SCHEDULER = """
(module
  (import "caxton" "schedule" (func $schedule (param i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0)
    "{\\"receiver\\":\\"client\\",\\"performative\\":\\"inform\\",\\"content\\":\\"tick\\"}")
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param i32 i32) (result i32)
    (call $schedule (i64.const 50) (i32.const 0) (i32.const 62)))
)
"""


async def test_schedule_delivers_later(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    import time

    import wasmtime

    await deploy("timer", wasmtime.wat2wasm(SCHEDULER))
    started = time.perf_counter()
    runtime.deliver_nowait("timer", message("timer", conversation_id="c-t"))
    reply = await recorder.reply()
    assert time.perf_counter() - started >= 0.045
    assert (reply["content"], reply["sender"], reply["conversation_id"]) == ("tick", "timer", "c-t")
