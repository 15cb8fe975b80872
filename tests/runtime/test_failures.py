"""Hostile agents fail one message at a time; the node and the other agents carry on."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from caxton.errors import AgentStartFailed
from caxton.runtime import AgentSpec, AgentState, Engine, Runtime
from tests.support import eventually, fast_runtime, message, wat

from .conftest import Deploy, Recorder, taken


@pytest.mark.parametrize(
    ("fixture", "cause"),
    [
        pytest.param("trap", "trap", id="trap"),
        pytest.param("spin", "deadline", id="infinite-loop"),
        pytest.param("membomb", "memory_limit", id="memory-bomb"),
        pytest.param("recursion", "stack_overflow", id="deep-recursion"),
    ],
)
async def test_hostile_message_fails_alone_and_agent_restarts(
    runtime: Runtime, deploy: Deploy, recorder: Recorder, fixture: str, cause: str
) -> None:
    await deploy("bad", wat(fixture))
    runtime.deliver_nowait("bad", message("bad", 1))
    name, data, failure = await recorder.failure()
    assert (name, failure.cause) == ("bad", cause)
    assert b'"content": 1' in data
    # the agent got a fresh instance and fails the next message the same way
    runtime.deliver_nowait("bad", message("bad", 2))
    assert (await recorder.failure())[2].cause == cause
    stats = runtime.agent_statistics("bad")
    assert (stats.state, stats.failures, stats.restarts) == (AgentState.RUNNING, 2, 2)
    assert stats.last_error is not None
    assert cause in stats.last_error
    assert runtime.statistics().executions[cause] == 2


@pytest.mark.parametrize(
    ("fixture", "code", "trap", "function"),
    [
        pytest.param(
            "trap", "unreachable", "wasm `unreachable` instruction executed", "<wasm function 1>"
        ),
        pytest.param("recursion", "stack_overflow", "call stack exhausted", "down"),
    ],
)
async def test_a_failure_keeps_the_trap_and_the_backtrace(
    runtime: Runtime,
    deploy: Deploy,
    recorder: Recorder,
    fixture: str,
    code: str,
    trap: str,
    function: str,
) -> None:
    """Not wasmtime's first line ("error while executing at wasm backtrace:"): the cause."""
    await deploy("bad", wat(fixture))
    runtime.deliver_nowait("bad", message("bad", 1))
    _, _, failure = await recorder.failure()
    assert failure.details["trap_code"] == code
    assert trap in failure.message
    assert "error while executing" not in failure.message
    frames = failure.details["backtrace"]
    assert frames[0].startswith("0: ")
    assert frames[0].endswith(f"<unknown>!{function}")
    last = runtime.agent_statistics("bad").last_error
    assert last is not None
    assert last.startswith(f"{failure.cause}: {failure.message}\nwasm backtrace:\n  0: ")


async def test_returned_error_fails_without_restart(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    await deploy("fail", wat("fail"))
    runtime.deliver_nowait("fail", message("fail"))
    assert (await recorder.failure())[2].cause == "returned_error"
    assert runtime.agent_statistics("fail").restarts == 0


async def test_other_agents_answer_while_one_spins(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    await deploy("spin", wat("spin"))
    await deploy("echo", wat("echo"))
    runtime.deliver_nowait("spin", message("spin"))
    await taken(runtime, "spin")
    started = time.perf_counter()
    for i in range(20):
        runtime.deliver_nowait("echo", message("echo", i))
        assert (await recorder.reply(within=1.0))["content"]["content"] == i
    assert time.perf_counter() - started < 0.25  # well inside spin's 0.3 s deadline
    loop_started = time.perf_counter()
    await asyncio.sleep(0)
    assert time.perf_counter() - loop_started < 0.05  # the event loop is never blocked
    assert (await recorder.failure())[2].cause == "deadline"


async def test_restart_budget_exhausted_means_failed_until_started(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    compiled = await deploy("trap", wat("trap"))
    for i in range(6):
        runtime.deliver_nowait("trap", message("trap", i))
        await recorder.failure()
    stats = runtime.agent_statistics("trap")
    assert (stats.state, stats.restarts, stats.failures) == (AgentState.FAILED, 5, 6)
    assert ("trap", AgentState.FAILED) in recorder.states
    await runtime.start_agent(AgentSpec(name="trap"), compiled)
    assert runtime.agent_statistics("trap").state is AgentState.RUNNING


async def test_huge_log_output_is_bounded(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    await deploy("spam", wat("logspam"))
    for _ in range(3):
        runtime.deliver_nowait("spam", message("spam"))

    async def handled() -> bool:
        return runtime.agent_statistics("spam").messages_handled == 3

    await eventually(handled, within=3.0, what="spam handled its 3 messages")
    stats = runtime.agent_statistics("spam")
    assert (stats.messages_handled, stats.failures) == (3, 0)
    assert stats.logs_dropped >= 3 * 999
    lines = runtime.recent_logs("spam")
    assert 1 <= len(lines) <= 3
    assert all(len(line.text) <= 4097 for line in lines)


@pytest.mark.parametrize(
    ("fixture", "cause"),
    [
        pytest.param("init_fail", "returned_error", id="non-zero"),
        pytest.param("init_spin", "deadline", id="timeout"),
    ],
)
async def test_caxton_init_failure_fails_the_start(
    runtime: Runtime, deploy: Deploy, fixture: str, cause: str
) -> None:
    with pytest.raises(AgentStartFailed) as info:
        await deploy("bad-init", wat(fixture))
    assert info.value.details["cause"] == cause
    assert isinstance(info.value.details["logs"], list)
    assert runtime.agents() == []


LOG_THEN_FAIL = """
(module
  (import "caxton" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "cannot find my config")
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0))
  (func (export "caxton_init") (result i32)
    (call $log (i32.const 3) (i32.const 0) (i32.const 21))
    (i32.const 2))
)
"""


async def test_start_failure_details_carry_the_agent_log(runtime: Runtime, deploy: Deploy) -> None:
    import wasmtime

    with pytest.raises(AgentStartFailed) as info:
        await deploy("noisy", wasmtime.wat2wasm(LOG_THEN_FAIL))
    assert info.value.details["logs"] == ["[error] cannot find my config"]


async def test_memory_limit_below_the_module_minimum_fails_the_start(deploy: Deploy) -> None:
    with pytest.raises(AgentStartFailed) as info:
        await deploy("big", wat("bigmem"), memory_limit=512 * 1024)
    assert info.value.details["cause"] == "memory_limit"


async def test_fuel_limits_each_message(recorder: Recorder) -> None:
    config = fast_runtime(fuel=1_000_000, execution_timeout=30.0)
    engine = Engine(config, cache_dir=None)
    try:
        async with Runtime(
            config, engine=engine, events=recorder, external=recorder.external
        ) as runtime:
            for name in ("spin", "echo"):
                compiled = await asyncio.to_thread(engine.compile, wat(name))
                await runtime.start_agent(AgentSpec(name=name), compiled)
            runtime.deliver_nowait("spin", message("spin"))
            assert (await recorder.failure())[2].cause == "out_of_fuel"
            for i in range(3):  # fuel is refilled per message
                runtime.deliver_nowait("echo", message("echo", i))
                assert (await recorder.reply())["content"]["content"] == i
    finally:
        engine.close()


def test_an_unexpected_host_function_failure_is_logged_once_a_minute(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A guest that can make a host function fail must not flood the log with tracebacks."""
    from caxton.runtime.sandbox import host

    monkeypatch.setattr(host, "_failure_logged", {})
    monkeypatch.setattr(host, "_failures_unlogged", {})
    with caplog.at_level(logging.ERROR, logger="caxton.runtime.host"):
        for _ in range(1000):
            try:
                raise RecursionError("deep")
            except RecursionError:
                host._failed("caxton.send")
        assert len(caplog.records) == 1
        assert caplog.records[0].exc_info is not None
        monkeypatch.setitem(
            host._failure_logged, "caxton.send", time.monotonic() - host.FAILURE_LOG_INTERVAL
        )
        try:
            raise RecursionError("deep")
        except RecursionError:
            host._failed("caxton.send")
    assert len(caplog.records) == 2
    assert "999 more since the last report" in caplog.records[1].getMessage()
