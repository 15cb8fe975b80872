"""Deploying and running real agents: replies, envelopes, kv, commands, backpressure."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
import wasmtime

from caxton.errors import AgentAlreadyExists, AgentNotFound, MailboxClosed, WouldBlock
from caxton.runtime import AgentSpec, AgentState, Engine, MemoryKv, Runtime
from tests.support import FAST, eventually, example, message, wat

from .conftest import Deploy, Recorder, taken


async def test_echo_replies_with_the_message_it_was_given(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    await deploy("echo", wat("echo"))
    sent = message("echo", {"x": 1}, conversation_id="conv-1", reply_with="r-7")
    runtime.deliver_nowait("echo", sent)
    reply = await recorder.reply()
    assert reply["content"] == json.loads(sent)
    assert reply["receiver"] == "client"
    assert reply["performative"] == "inform"
    assert reply["sender"] == "echo"
    assert reply["message_id"]
    assert reply["created_at"].endswith("Z")
    assert reply["conversation_id"] == "conv-1"
    assert reply["in_reply_to"] == "r-7"
    stats = runtime.agent_statistics("echo")
    assert stats.state is AgentState.RUNNING
    assert stats.messages_handled == 1
    assert stats.kind == "reactor"


async def test_a_message_without_conversation_starts_one(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    await deploy("echo", wat("echo"))
    runtime.deliver_nowait("echo", message("echo", 1))
    runtime.deliver_nowait("echo", message("echo", 2))
    first, second = await recorder.reply(), await recorder.reply()
    assert "in_reply_to" not in first
    assert first["conversation_id"]
    assert second["conversation_id"]
    assert first["conversation_id"] != second["conversation_id"]
    assert first["message_id"] != second["message_id"]


async def test_c_examples_play_ping_pong(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    await deploy("pong", example("pong"))
    await deploy("ping", example("ping"))
    runtime.deliver_nowait(
        "ping", message("ping", {"op": "start", "peer": "pong", "n": 500}, conversation_id="g1")
    )
    done = await recorder.reply()
    assert done["content"] == {"done": 500}
    assert done["sender"] == "ping"
    assert done["conversation_id"] == "g1"
    assert runtime.agent_statistics("pong").messages_handled == 500
    assert runtime.agent_statistics("ping").messages_handled == 501
    stats = runtime.statistics()
    assert stats.executions["ok"] == 1001
    assert sum(stats.duration_buckets) == 1001


async def test_kv_persists_through_the_backend_across_restarts(
    runtime: Runtime, deploy: Deploy, recorder: Recorder, engine: object
) -> None:
    compiled = await deploy("kv", wat("kvcount"))
    for _ in range(3):
        runtime.deliver_nowait("kv", message("kv"))
    assert [(await recorder.reply())["content"] for _ in range(3)] == [1, 2, 3]
    assert isinstance(runtime.kv, MemoryKv)
    assert runtime.kv.data["kv"] == {b"count": b"3"}
    await runtime.stop_agent("kv")
    await runtime.start_agent(AgentSpec(name="kv"), compiled)
    runtime.deliver_nowait("kv", message("kv"))
    assert (await recorder.reply())["content"] == 4


async def test_command_agent_gets_stdin_and_its_exit_code_counts(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    await deploy("exit3", wat("command_exit3"))
    runtime.deliver_nowait("exit3", message("exit3"))
    name, _, failure = await recorder.failure()
    assert (name, failure.cause, failure.details["exit_code"]) == ("exit3", "exit", 3)
    assert runtime.agent_statistics("exit3").state is AgentState.RUNNING


COMMAND_ECHO = """
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16)
    "{\\"receiver\\":\\"client\\",\\"performative\\":\\"inform\\",\\"content\\":")
  (data (i32.const 100) "}\\nnot json\\n")
  (func (export "_start")
    ;; iovecs at 0: [prefix 55 bytes][stdin up to 1000 bytes at 1024][suffix 11 bytes]
    (i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const 1000))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 200) (i32.const 16)) (i32.store (i32.const 204) (i32.const 55))
    (i32.store (i32.const 208) (i32.const 1024))
    (i32.store (i32.const 212) (i32.load (i32.const 8)))
    (i32.store (i32.const 216) (i32.const 100)) (i32.store (i32.const 220) (i32.const 11))
    ;; one iovec per call: a WASI write may be short (libc would loop)
    (drop (call $write (i32.const 1) (i32.const 200) (i32.const 1) (i32.const 12)))
    (drop (call $write (i32.const 1) (i32.const 208) (i32.const 1) (i32.const 12)))
    (drop (call $write (i32.const 1) (i32.const 216) (i32.const 1) (i32.const 12))))
)
"""


async def test_command_agent_stdout_lines_are_messages(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    await deploy("cmd", wasmtime.wat2wasm(COMMAND_ECHO))
    sent = message("cmd", "hi", conversation_id="c-cmd")
    runtime.deliver_nowait("cmd", sent)
    reply = await recorder.reply()
    assert reply["content"] == json.loads(sent)
    assert (reply["sender"], reply["conversation_id"]) == ("cmd", "c-cmd")

    async def logged() -> bool:
        return any(line.text == "not json" for line in runtime.recent_logs("cmd"))

    await eventually(logged, what="the line that is not JSON was logged")
    assert any(line.text == "not json" for line in runtime.recent_logs("cmd"))


async def test_full_mailbox_is_backpressure(runtime: Runtime, deploy: Deploy) -> None:
    await deploy("spin", wat("spin"))
    runtime.deliver_nowait("spin", message("spin"))  # occupies the agent until its deadline
    await taken(runtime, "spin")
    for _ in range(runtime.config.mailbox_capacity):
        runtime.deliver_nowait("spin", message("spin"))
    with pytest.raises(WouldBlock):
        runtime.deliver_nowait("spin", message("spin"))
    with pytest.raises(WouldBlock):
        await runtime.deliver("spin", message("spin"), wait=0.01)
    await runtime.stop_agent("spin")


SENDER_TO_FULL = """
(module
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\\"receiver\\":\\"spin\\",\\"performative\\":\\"inform\\"}")
  (data (i32.const 100) "not json")
  (data (i32.const 200) "{\\"performative\\":\\"inform\\"}")
  (global $codes (mut i32) (i32.const 0))
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  ;; sends 3 times, stores each return code at 400.. and reports them via log
  (func (export "caxton_handle") (param i32 i32) (result i32)
    (i32.store (i32.const 400) (call $send (i32.const 0) (i32.const 43)))
    (i32.store (i32.const 404) (call $send (i32.const 100) (i32.const 8)))
    (i32.store (i32.const 408) (call $send (i32.const 200) (i32.const 26)))
    (i32.store (i32.const 412) (call $send (i32.const 65530) (i32.const 100)))
    (i32.const 0))
)
"""


async def test_send_return_codes(runtime: Runtime, deploy: Deploy) -> None:
    await deploy("spin", wat("spin"))
    await deploy("sender", wasmtime.wat2wasm(SENDER_TO_FULL))
    runtime.deliver_nowait("spin", message("spin"))
    await taken(runtime, "spin")
    for _ in range(runtime.config.mailbox_capacity):
        runtime.deliver_nowait("spin", message("spin"))
    runtime.deliver_nowait("sender", message("sender"))
    await _wait_handled(runtime, "sender", 1)
    agent = runtime._agents["sender"]  # read the codes the guest stored
    codes = [
        int.from_bytes(agent.inst.view[400 + 4 * i : 404 + 4 * i], "little", signed=True)
        for i in range(4)
    ]
    assert codes == [-4, -1, -1, -1]
    await runtime.stop_agent("spin")


async def _wait_handled(runtime: Runtime, name: str, n: int) -> None:
    async def handled() -> bool:
        return runtime.agent_statistics(name).messages_handled >= n

    await eventually(handled, what=f"{name} handled {n} messages")


async def test_lifecycle_errors(runtime: Runtime, deploy: Deploy) -> None:
    compiled = await deploy("nop", wat("nop"))
    with pytest.raises(AgentAlreadyExists):
        await runtime.start_agent(AgentSpec(name="nop"), compiled)
    with pytest.raises(AgentNotFound):
        runtime.deliver_nowait("ghost", b"{}")
    await runtime.stop_agent("nop")
    assert runtime.agent_statistics("nop").state is AgentState.STOPPED
    with pytest.raises(MailboxClosed):
        runtime.deliver_nowait("nop", message("nop"))
    await runtime.start_agent(AgentSpec(name="nop"), compiled)
    runtime.deliver_nowait("nop", message("nop"))
    await _wait_handled(runtime, "nop", 1)
    assert await runtime.remove_agent("nop") == []
    assert runtime.agents() == []


async def test_a_conversation_that_never_pauses_does_not_starve_other_agents(
    recorder: Recorder,
) -> None:
    """One worker, a long ping-pong on its local run queue: echo still answers meanwhile."""
    config = dataclasses.replace(FAST, max_concurrent_executions=1, execution_timeout=5.0)
    engine = Engine(config, cache_dir=None)
    try:
        async with Runtime(
            config, engine=engine, events=recorder, external=recorder.external
        ) as runtime:
            for name in ("pong", "ping", "echo"):
                compiled = await asyncio.to_thread(engine.compile, example(name))
                await runtime.start_agent(AgentSpec(name=name), compiled)
            game = {"op": "start", "peer": "pong", "n": 50_000}
            runtime.deliver_nowait("ping", message("ping", game))
            await _wait_handled(runtime, "pong", 100)  # the game is on
            runtime.deliver_nowait("echo", message("echo", "hi"))
            first = await recorder.reply(within=60)
            assert first["sender"] == "echo"  # answered while the game was still on
            assert runtime.agent_statistics("pong").messages_handled < 50_000
            assert (await recorder.reply(within=60))["content"] == {"done": 50_000}
    finally:
        engine.close()


def test_a_full_mailbox_is_the_abis_backpressure_code() -> None:
    """`Offer.FULL` crosses into wasm as `send`'s return code: it is ``ERR_BACKPRESSURE``."""
    from caxton.runtime import abi
    from caxton.runtime.delivery import Offer

    assert Offer.FULL.value == abi.ERR_BACKPRESSURE
