"""Deploying agents: real modules, real messages, and every deploy error."""

from __future__ import annotations

import asyncio

import pytest
import wasmtime

from caxton.agents import NAME_PATTERN, DeployRequest
from caxton.errors import (
    AgentAlreadyExists,
    AgentLimitReached,
    AgentStartFailed,
    InvalidRequest,
    InvalidWasm,
    ModuleTooLarge,
)
from caxton.node import Node
from tests.support import example, wat

from .conftest import Client, StartNode


async def test_echo_counter_and_command_agents_answer(node: Node, client: Client) -> None:
    agents = node.agents
    echo = await agents.deploy(DeployRequest(name="echo", wasm=example("echo")))
    await agents.deploy(DeployRequest(name="counter", wasm=example("counter")))
    shout = await agents.deploy(DeployRequest(name="shout", wasm=example("shout")))
    assert (echo.state, echo.kind, echo.version, shout.kind) == ("running", "reactor", 1, "command")
    assert await client.ask(node, "echo", {"hello": "world"}) == {"hello": "world"}
    assert await client.ask(node, "counter", {}) == {"memory_count": 1, "kv_count": 1}
    assert await client.ask(node, "counter", {}) == {"memory_count": 2, "kv_count": 2}
    assert await client.ask(node, "shout", "hello") == "HELLO"
    info = (await agents.get("counter")).as_dict()
    assert info["counters"] == {"messages_handled": 2, "failures": 0, "restarts": 0}
    assert info["module_sha256"]
    assert info["module_size"] == len(example("counter"))
    assert info["limits"]["memory_bytes"] == node.config.runtime.wasm_memory_limit
    assert info["created_at"].endswith("Z")
    assert info["last_active"].endswith("Z")
    assert info["grants"] == {"data_dir": None}
    page, total = await agents.list(offset=1, limit=1)
    assert ([a.name for a in page], total) == (["echo"], 3)


async def test_env_limits_and_granted_directory(node: Node) -> None:
    info = await node.agents.deploy(
        DeployRequest(
            name="echo", wasm=example("echo"), env={"A": "1"}, memory_limit=1 << 20, grant_dir=True
        )
    )
    assert info.env == {"A": "1"}
    assert info.memory_limit == 1 << 20
    data = node.config.coordination.data_dir / "agents" / "echo" / "data"
    assert info.data_dir == str(data)
    assert data.is_dir()
    stored = await node.storage.agents.get("echo")
    assert stored is not None
    assert stored.grants == {"data_dir": str(data)}
    await node.agents.remove("echo")
    assert not data.parent.exists()


@pytest.mark.parametrize("name", ["", "Echo", "1abc", "a_b", "a" * 64, "-x"])
async def test_a_bad_name_names_the_rule(node: Node, name: str) -> None:
    with pytest.raises(InvalidRequest, match="lowercase letters") as info:
        await node.agents.deploy(DeployRequest(name=name, wasm=example("echo")))
    assert info.value.details["pattern"] == NAME_PATTERN.pattern


@pytest.mark.parametrize(
    ("env", "match"),
    [({"": "x"}, "not a valid variable"), ({"A=B": "x"}, "not a valid"), ({"A": "x\0"}, "NUL")],
)
async def test_bad_env_is_refused(node: Node, env: dict[str, str], match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        await node.agents.deploy(DeployRequest(name="echo", wasm=example("echo"), env=env))


async def test_memory_limit_above_the_node_limit_and_fuel_without_metering(node: Node) -> None:
    too_much = node.config.runtime.wasm_memory_limit + 1
    with pytest.raises(InvalidRequest, match="wasm_memory_limit"):
        await node.agents.deploy(
            DeployRequest(name="echo", wasm=example("echo"), memory_limit=too_much)
        )
    with pytest.raises(InvalidRequest, match="fuel"):
        await node.agents.deploy(DeployRequest(name="echo", wasm=example("echo"), fuel=1000))


async def test_duplicate_and_concurrent_deploys_of_one_name(node: Node) -> None:
    results = await asyncio.gather(
        *(node.agents.deploy(DeployRequest(name="echo", wasm=example("echo"))) for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, AgentAlreadyExists) for r in results if isinstance(r, Exception))
    with pytest.raises(AgentAlreadyExists) as info:
        await node.agents.deploy(DeployRequest(name="echo", wasm=example("echo")))
    assert info.value.status == 409
    assert await node.storage.agents.count() == 1


async def test_max_agents(start_node: StartNode) -> None:
    node = await start_node(max_agents=2)
    for name in ("a", "b"):
        await node.agents.deploy(DeployRequest(name=name, wasm=example("echo")))
    with pytest.raises(AgentLimitReached) as info:
        await node.agents.deploy(DeployRequest(name="c", wasm=example("echo")))
    assert (info.value.status, info.value.code) == (429, "RESOURCE_LIMIT_EXCEEDED")
    await node.agents.remove("a")
    await node.agents.deploy(DeployRequest(name="c", wasm=example("echo")))


async def test_invalid_modules_are_refused_and_leave_nothing(node: Node) -> None:
    cases = [
        (b"not wasm at all", InvalidWasm, "not"),
        (example("echo")[:100], InvalidWasm, "truncated"),
        (wat("bad_import"), InvalidWasm, "env.foo"),
        (wat("no_handle"), InvalidWasm, "caxton_handle"),
    ]
    for wasm, error, match in cases:
        with pytest.raises(error, match=match):
            await node.agents.deploy(DeployRequest(name="bad", wasm=wasm))
    assert await node.storage.agents.count() == 0
    assert node.runtime.agents() == []


async def test_module_above_the_size_limit(start_node: StartNode) -> None:
    node = await start_node(max_module_size=1024)
    with pytest.raises(ModuleTooLarge) as info:
        await node.agents.deploy(DeployRequest(name="echo", wasm=example("echo")))
    assert info.value.status == 413


INIT_LOGS_AND_FAILS = """
(module
  (import "caxton" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "no config found")
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_init") (result i32)
    (call $log (i32.const 3) (i32.const 16) (i32.const 15))
    (i32.const 2))
  (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0)))
"""


async def test_caxton_init_failure_rolls_back_with_logs(node: Node) -> None:
    wasm = bytes(wasmtime.wat2wasm(INIT_LOGS_AND_FAILS))
    with pytest.raises(AgentStartFailed, match="caxton_init returned 2") as info:
        await node.agents.deploy(DeployRequest(name="bad", wasm=wasm, grant_dir=True))
    assert info.value.details["logs"] == ["[error] no config found"]
    assert await node.storage.agents.get("bad") is None
    assert node.runtime.agents() == []
    assert not (node.config.coordination.data_dir / "agents" / "bad").exists()
    # the name is free again
    await node.agents.deploy(DeployRequest(name="bad", wasm=example("echo")))
    assert node.agents.statistics().deploy_failures == 1
