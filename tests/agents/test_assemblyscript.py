"""The AssemblyScript SDK and examples, built from source and run on a real node.

``scripts/build-agents.sh`` builds ``examples/agents/assemblyscript/*.ts`` with the compiler
pinned in ``sdk/assemblyscript/package-lock.json`` (installed with ``npm ci``) and the SDK's
preset; the modules it builds must be the ones committed, import nothing but ``caxton`` and WASI,
and behave: echo answers, the counter keeps its count in memory across hibernation (AssemblyScript
keeps module variables in wasm globals) and in kv across a restart, and the bidder negotiates
with the C contract-net agents.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from caxton.agents import DeployRequest
from tests.support import EXAMPLES, ROOT, eventually, example, message

from .conftest import Client, StartNode

BUILD_SCRIPT = ROOT / "scripts" / "build-agents.sh"
AS_EXAMPLES = EXAMPLES / "assemblyscript"
SOURCES = sorted(p.stem for p in AS_EXAMPLES.glob("*.ts"))
ASC = ROOT / "sdk" / "assemblyscript" / "node_modules" / ".bin" / "asc"
PROBE_DIR = ROOT / "tests" / "fixtures" / "assemblyscript"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``OUT_DIR/assemblyscript`` of a fresh ``scripts/build-agents.sh`` run."""
    if shutil.which("npm") is None or shutil.which("clang") is None:
        pytest.skip("node/npm and clang are needed (apt-get install npm clang lld wasi-libc)")
    out = tmp_path_factory.mktemp("agents")
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), str(out)],
        cwd=tmp_path_factory.getbasetemp(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out / "assemblyscript"


def module(built: Path, name: str) -> bytes:
    return (built / f"{name}.wasm").read_bytes()


def test_the_build_script_builds_every_source_as_committed(built: Path) -> None:
    assert {"echo", "counter", "bidder"} <= set(SOURCES)
    assert sorted(p.stem for p in built.glob("*.wasm")) == SOURCES
    for name in SOURCES:
        committed = AS_EXAMPLES / f"{name}.wasm"
        assert committed.read_bytes() == module(built, name), (
            f"{committed} is stale: run scripts/build-agents.sh"
        )


@pytest.mark.parametrize("name", SOURCES)
def test_the_preset_makes_a_reactor_with_no_foreign_imports(built: Path, name: str) -> None:
    compiled = wasmtime.Module(wasmtime.Engine(), module(built, name))
    imports = {(i.module, i.name) for i in compiled.imports}
    assert {m for m, _ in imports} <= {"caxton", "wasi_snapshot_preview1"}, imports
    exports = {e.name for e in compiled.exports}
    assert {"memory", "caxton_alloc", "caxton_handle", "caxton_init", "_initialize"} <= exports


async def test_echo_answers(built: Path, start_node: StartNode, client: Client) -> None:
    node = await start_node()
    await node.agents.deploy(DeployRequest(name="as-echo", wasm=module(built, "echo")))
    content = {"text": 'h\u00e9llo "w\u00f6rld" \u2603', "list": [1, 2.5, None, True]}
    assert await client.ask(node, "as-echo", content) == content
    assert await client.ask(node, "as-echo") is None


async def test_the_counter_keeps_memory_across_hibernation_and_kv_across_a_restart(
    built: Path, start_node: StartNode, client: Client
) -> None:
    node = await start_node()
    await node.agents.deploy(DeployRequest(name="as-counter", wasm=module(built, "counter")))
    counts = [await client.ask(node, "as-counter", {}) for _ in range(3)]
    assert counts[-1] == {"memory_count": 3, "kv_count": 3}
    for expected in (4, 5):  # each message after a hibernation: restored, counting on
        assert await node.runtime.hibernate("as-counter")
        assert (await node.agents.get("as-counter")).state == "hibernated"
        reply = await client.ask(node, "as-counter", {})
        assert reply == {"memory_count": expected, "kv_count": expected}
    assert (await node.agents.get("as-counter")).failures == 0
    await node.aclose()

    node = await start_node()  # a restart: a fresh instance, the kv count goes on
    assert await client.ask(node, "as-counter", {}) == {"memory_count": 1, "kv_count": 6}
    reset = await client.ask(node, "as-counter", {"op": "reset"})
    assert reset == {"memory_count": 0, "kv_count": 0}


async def test_the_bidder_negotiates_with_the_c_manager_and_bidders(
    built: Path, start_node: StartNode, client: Client
) -> None:
    node = await start_node()
    agents = node.agents
    await agents.deploy(DeployRequest(name="manager", wasm=example("manager")))
    await agents.deploy(DeployRequest(name="c-bidder", wasm=example("bidder"), env={"PRICE": "20"}))
    bidder = module(built, "bidder")
    await agents.deploy(DeployRequest(name="as-cheap", wasm=bidder, env={"PRICE": "15"}))
    await agents.deploy(DeployRequest(name="as-dear", wasm=bidder, env={"PRICE": "30"}))
    await agents.deploy(DeployRequest(name="as-busy", wasm=bidder, env={"REFUSE": "1"}))

    async def negotiate(task: str, bidders: list[str]) -> object:
        content = {"op": "start", "task": task, "bidders": bidders}
        return await client.ask(node, "manager", content)

    won = await negotiate("paint", ["c-bidder", "as-cheap", "as-busy"])
    assert won == {"winner": "as-cheap", "price": 15, "proposals": 2, "refusals": 1}
    lost = await negotiate("glue", ["as-dear", "c-bidder"])
    assert lost == {"winner": "c-bidder", "price": 20, "proposals": 2, "refusals": 0}

    def logged(agent: str, text: str) -> Any:
        async def check() -> bool:
            return text in [line.text for line in node.runtime.recent_logs(agent)]

        return check

    # The manager answers the client as it sends the loser its reject: the loser's log line may
    # come a moment after the answer.
    await eventually(logged("as-dear", "bidder: proposal rejected"), what="as-dear was rejected")
    await eventually(logged("as-cheap", "bidder: won a contract, task done"), what="as-cheap won")


def _doc_section() -> str:
    text = (ROOT / "docs" / "agents.md").read_text()
    return text.split("<!-- assemblyscript: begin", 1)[1].split("<!-- assemblyscript: end", 1)[0]


def _block(section: str, lang: str) -> str:
    return section.split(f"```{lang}\n", 1)[1].split("```", 1)[0]


async def test_the_docs_quick_start_builds_and_answers(
    built: Path, tmp_path: Path, start_node: StartNode, client: Client
) -> None:
    """docs/agents.md's AssemblyScript quick start, file by file and command by command."""
    section = _doc_section()
    (tmp_path / "sdk").symlink_to(ROOT / "sdk")  # the doc works from the repository's root
    (tmp_path / "greeter").mkdir()
    (tmp_path / "greeter" / "greeter.ts").write_text(_block(section, "ts"))
    (tmp_path / "greeter" / "asconfig.json").write_text(_block(section, "json"))
    commands = [
        line.removeprefix("$ ")
        for line in _block(section, "console").splitlines()
        if line.startswith("$ ")
    ]
    install, build, deploy, send = (shlex.split(c, comments=True) for c in commands)
    # scripts/test (and the `built` fixture, through build-agents.sh) ran this install already.
    assert install == ["npm", "ci", "--prefix", "sdk/assemblyscript"]
    assert build[:2] == ["cd", "greeter"]
    result = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", commands[1]],  # the line as written: cd, asc, cd back
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert deploy[:3] == ["caxton", "agent", "deploy"]
    wasm = (tmp_path / deploy[3]).read_bytes()
    node = await start_node()
    await node.agents.deploy(DeployRequest(name=deploy[5], wasm=wasm))
    assert send[:4] == ["caxton", "message", "send", "--to"]
    content = json.loads(send[send.index("--content") + 1])
    assert await client.ask(node, send[4], content) == {"greeting": "Hello, Ada!", "visits": 1}
    assert await client.ask(node, send[4], content) == {"greeting": "Hello, Ada!", "visits": 2}
    assert "greeted Ada (visit 2)" in [line.text for line in node.runtime.recent_logs("greeter")]


@pytest.fixture(scope="module")
def probe(built: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """tests/fixtures/assemblyscript/probe.ts, built with the SDK's preset."""
    out = tmp_path_factory.mktemp("probe") / "probe.wasm"
    result = subprocess.run(
        [str(ASC), "probe.ts", "-o", str(out)],
        cwd=PROBE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out.read_bytes()


async def test_the_sdk_surface_on_a_node(
    probe: bytes, start_node: StartNode, client: Client
) -> None:
    node = await start_node(agent_kv_max_keys=5)
    await node.agents.deploy(DeployRequest(name="probe", wasm=probe))

    async def ask(op: str, **content: object) -> object:
        return await client.ask(node, "probe", {"op": op, **content})

    fields = {
        "reply_with": "r-1",
        "protocol": "fipa-request",
        "ontology": {"o": 1},
        "conversation_id": "c-\u00e9",
    }
    await node.runtime.deliver("probe", message("probe", {"op": "envelope", "n": 5}, **fields))
    envelope = (await client.reply())["content"]
    assert envelope == {
        "performative": "request",
        "sender": "client",
        "conversation_id": "c-\u00e9",
        "reply_with": "r-1",
        "protocol": "fipa-request",
        "ontology": {"o": 1},
        "n": 5,
        "started": "yes",  # onInit ran
    }

    assert await ask("schedule") == {"rc": 0, "name": "ok"}
    assert (await client.reply())["content"] == "tick"  # 50 ms later
    assert await ask("send_to") == "direct"
    assert await ask("bad_send") == {"rc": -1, "name": "malformed"}
    assert await ask("kv") == {
        "set": {"rc": 0, "name": "ok"},
        "round_trip": True,
        "del": {"rc": 0, "name": "ok"},
        "del_again": {"rc": -1, "name": "malformed"},  # KV_ABSENT, the same number
        "absent": -1,
    }
    assert await ask("kv_quota") == {"rc": -8, "name": "quota"}
    assert await ask("kv_too_large") == {"rc": -2, "name": "too_large"}
    assert await ask("errors") == [
        "ok", "malformed", "too_large", "not_permitted", "backpressure", "not_found",
        "wrong_type", "over_budget", "quota", "storage", "error -42",
    ]  # fmt: skip
    clock = await ask("clock")
    assert isinstance(clock, dict)
    assert 0 <= clock["random"] < 1
    assert abs(clock["now"] - time.time() * 1000) < 60_000
    await node.runtime.deliver("probe", message("probe", {"op": "builder"}))
    built = await client.reply()
    assert (built["protocol"], built["n"], built["content"]) == ("x-test", 7, {"built": True})

    assert await ask("log") == "logged"
    lines = [(line.level, line.text) for line in node.runtime.recent_logs("probe")]
    for expected in (
        ("debug", "probe: debug"),
        ("info", "probe: info"),
        ("warn", "probe: warn"),
        ("error", "probe: error"),
        ("info", "probe: h\u00e9llo"),
        ("debug", "trace: probe trace 1.5, 2.0"),
        ("info", "probe: console"),
    ):
        assert expected in lines

    await node.runtime.deliver("probe", message("probe", {"op": "abort"}))
    info = await eventually_failed(node)
    assert info.restarts >= 1
    texts = [line.text for line in node.runtime.recent_logs("probe")]
    assert any(t.startswith("abort: probe: boom at probe.ts:") for t in texts), texts
    assert await ask("envelope") is not None  # a fresh instance answers again


async def eventually_failed(node: Any) -> Any:
    async def failed() -> Any:
        info = await node.agents.get("probe")
        return info if info.failures >= 1 else None

    return await eventually(failed)
