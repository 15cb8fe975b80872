"""Agents written in Rust with the SDK in ``sdk/rust``, built from source, on a real node.

``scripts/build-agents.sh`` builds the Rust examples (``examples/agents/rust/``) with Debian's
toolchain (``rustc cargo libstd-rust-dev-wasm32 lld librust-serde-json-dev``, offline), and
cargo builds ``tests/fixtures/rust/trapper`` (an agent that panics or overflows its stack when
asked). Then a ``caxton serve`` process runs them: echo answers, the counter keeps its count
in memory across hibernation and in kv across a restart, a panic fails one message and its text
is in the log, the last error, the dead letter and ``caxton debug``, a stack overflow is told
apart from a panic, and the Rust bidder wins or loses a contract-net negotiation run by the C
manager against C bidders.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from tests.nodeproc import NodeProcess, write_config
from tests.support import EXAMPLES, ROOT, wait_until

from .test_examples import abi_problems

BUILD_SCRIPT = ROOT / "scripts" / "build-agents.sh"
RUST_EXAMPLES = EXAMPLES / "rust"
RUST_SOURCES = sorted(p.parent.name for p in RUST_EXAMPLES.glob("*/Cargo.toml"))
TRAPPER = ROOT / "tests" / "fixtures" / "rust" / "trapper"
DEBIAN_CARGO = Path("/usr/bin/cargo")
DEBIAN_RUSTC = Path("/usr/bin/rustc")

pytestmark = pytest.mark.slow


def _rust_target() -> str:
    targets = subprocess.run(
        [str(DEBIAN_RUSTC), "--print", "target-list"], capture_output=True, text=True, check=True
    ).stdout.split()
    return "wasm32-wasip1" if "wasm32-wasip1" in targets else "wasm32-wasi"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scripts/build-agents.sh's output dir (the Rust modules are in its ``rust/``)."""
    if not DEBIAN_CARGO.exists() and shutil.which("cargo") is None:
        pytest.skip("cargo is not installed (apt-get install rustc cargo libstd-rust-dev-wasm32)")
    out = tmp_path_factory.mktemp("agents")
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), str(out)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def trapper(built: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The trapper fixture, built with the same toolchain and flags as the examples."""
    target = _rust_target()
    target_dir = tmp_path_factory.mktemp("trapper")
    env = {
        **os.environ,
        "RUSTC": str(DEBIAN_RUSTC),
        "CARGO_TARGET_DIR": str(target_dir),
        "RUSTFLAGS": "-C link-arg=-zstack-size=32768",
    }
    result = subprocess.run(
        [str(DEBIAN_CARGO), "build", "--quiet", "--release", "--target", target],
        cwd=TRAPPER,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return (target_dir / target / "release" / "trapper.wasm").read_bytes()


# --------------------------------------------------------------------------- the modules


def test_build_script_builds_every_rust_example(built: Path) -> None:
    assert sorted(p.stem for p in (built / "rust").glob("*.wasm")) == RUST_SOURCES
    assert {"echo", "counter", "bidder", "pong"} <= set(RUST_SOURCES)


@pytest.mark.parametrize("name", RUST_SOURCES)
def test_rust_example_follows_the_abi_in_one_page(built: Path, name: str) -> None:
    engine = wasmtime.Engine()
    for module_path in (built / "rust" / f"{name}.wasm", RUST_EXAMPLES / f"{name}.wasm"):
        module = wasmtime.Module.from_file(engine, str(module_path))
        assert abi_problems(module) == [], module_path
        exports = {exp.name: exp.type for exp in module.exports}
        assert {"memory", "caxton_alloc", "caxton_handle"} <= set(exports)
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.MemoryType)
        assert memory.limits.min == 1  # a 32 KiB stack and the data fit in one 64 KiB page


@pytest.mark.parametrize("name", RUST_SOURCES)
def test_committed_rust_module_is_up_to_date(built: Path, name: str) -> None:
    """The committed modules were built from the current sources and SDK (Debian rustc 1.63)."""
    version = subprocess.run(
        [str(DEBIAN_RUSTC), "--version"], capture_output=True, text=True, check=True
    ).stdout
    if not version.startswith("rustc 1.63."):
        pytest.skip("the committed Rust modules are built with Debian 12's rustc 1.63")
    committed = RUST_EXAMPLES / f"{name}.wasm"
    assert committed.read_bytes() == (built / "rust" / f"{name}.wasm").read_bytes(), (
        f"{committed} is stale: run scripts/build-agents.sh"
    )


def test_the_sdk_unit_tests_pass(built: Path, tmp_path: Path) -> None:
    """The scanner and the message builder, tested on the build machine (with serde too)."""
    for features in ([], ["--features", "serde"]):
        result = subprocess.run(
            [str(DEBIAN_CARGO), "test", "--quiet", "--lib", *features],
            cwd=ROOT / "sdk" / "rust",
            env={**os.environ, "RUSTC": str(DEBIAN_RUSTC), "CARGO_TARGET_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "test result: ok. 5 passed" in result.stdout


# --------------------------------------------------------------------------- a real node


class Node:
    """A `caxton serve` process and the HTTP calls the tests make to it."""

    def __init__(self, process: NodeProcess) -> None:
        self.process = process

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.process.url("api", f"/api/v1{path}"),
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def deploy(self, name: str, wasm: bytes, **env: str) -> None:
        body = {"name": name, "wasm": base64.b64encode(wasm).decode(), "env": env}
        status, answer = self.call("POST", "/agents", body)
        assert status == 201, answer

    def ask(self, receiver: str, content: Any, performative: str = "request") -> dict[str, Any]:
        """Send as the client ``tester`` and return the first message back to it."""
        body = {
            "receiver": receiver,
            "sender": "tester",
            "performative": performative,
            "content": content,
        }
        status, answer = self.call("POST", "/messages?wait=10s", body)
        assert status == 200, answer
        assert isinstance(answer, dict)
        return answer

    def agent(self, name: str) -> dict[str, Any]:
        status, answer = self.call("GET", f"/agents/{name}")
        assert status == 200, answer
        return dict(answer)

    def debug(self, name: str) -> dict[str, Any]:
        status, answer = self.call("GET", f"/agents/{name}/debug")
        assert status == 200, answer
        return dict(answer)

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "caxton", *args, "--server", self.process.url("api", "")],
            capture_output=True,
            text=True,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("CAXTON_")},
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    write_config(tmp_path, '\n[runtime]\nagent_idle_timeout = "1s"\ngc_interval = "1s"\n')
    return tmp_path


@pytest.fixture
def node(node_dir: Path) -> Iterator[Node]:
    with NodeProcess(node_dir / "caxton.toml", args=["serve", "--no-examples", "--config"]) as proc:
        proc.args.append(str(node_dir / "caxton.toml"))
        proc.start()
        yield Node(proc)


def _module(built: Path, name: str) -> bytes:
    return (built / "rust" / f"{name}.wasm").read_bytes()


def test_rust_echo_answers(built: Path, node: Node) -> None:
    node.deploy("echo-rs", _module(built, "echo"))
    reply = node.ask("echo-rs", {"hello": "wörld", "n": [1, {"deep": None}]})
    assert (reply["sender"], reply["performative"]) == ("echo-rs", "inform")
    assert reply["content"] == {"hello": "wörld", "n": [1, {"deep": None}]}
    assert node.ask("echo-rs", None)["content"] is None


def test_rust_counter_keeps_memory_across_hibernation_and_kv_across_a_restart(
    built: Path, node: Node
) -> None:
    node.deploy("counter-rs", _module(built, "counter"))
    for n in (1, 2, 3):
        assert node.ask("counter-rs", {})["content"] == {"memory_count": n, "kv_count": n}
    # Idle for agent_idle_timeout (1 s): hibernated, its memory saved; the next message
    # restores it.
    wait_until(
        lambda: node.agent("counter-rs")["state"] == "hibernated",
        what="the counter hibernated",
    )
    assert node.ask("counter-rs", {})["content"] == {"memory_count": 4, "kv_count": 4}

    code, _ = node.process.stop()
    assert code == 0
    node.process.start()
    # A fresh instance: memory starts over, kv kept its count.
    assert node.ask("counter-rs", {})["content"] == {"memory_count": 1, "kv_count": 5}
    reset = node.ask("counter-rs", {"op": "reset"})["content"]
    assert reset == {"memory_count": 0, "kv_count": 0}
    assert node.ask("counter-rs", {})["content"] == {"memory_count": 1, "kv_count": 1}


def test_a_rust_panic_fails_one_message_and_its_text_is_kept(trapper: bytes, node: Node) -> None:
    node.deploy("trapper", trapper)
    assert node.ask("trapper", {})["content"] == "ok"
    reply = node.ask("trapper", {"op": "panic", "text": "the widget is on fire"})
    assert reply["performative"] == "failure"
    # The next message is handled by a fresh instance.
    assert node.ask("trapper", {})["content"] == "ok"

    panic = "the widget is on fire"
    info = node.agent("trapper")
    assert info["counters"]["failures"] == 1
    last = info["last_error"]
    assert last.startswith("trap: handling the message: trap: wasm trap: wasm `unreachable`")
    assert "panicked at src/lib.rs:" in last
    assert panic in last
    assert "\nwasm backtrace:\n  0: 0x" in last

    view = node.debug("trapper")
    assert any(panic in line["text"] and line["level"] == "error" for line in view["logs"])
    (letter,) = view["dead_letters"]
    details = letter["details"]
    assert letter["reason"] == "handler_failed"
    assert details["cause"] == "trap"
    assert details["trap_code"] == "unreachable"
    assert panic in details["log"]
    assert panic in details["error"]
    assert details["backtrace"][0].startswith("0: 0x")
    assert any(e["source"] == "dead_letter" and panic in e["text"] for e in view["last_errors"])

    shown = node.cli("debug", "--agent-id", "trapper")
    assert panic in shown
    assert "wasm backtrace:" in shown
    assert "unreachable" in shown


def test_a_rust_stack_overflow_is_told_apart_from_a_panic(trapper: bytes, node: Node) -> None:
    node.deploy("trapper", trapper)
    reply = node.ask("trapper", {"op": "overflow"})
    assert reply["performative"] == "failure"
    last = node.agent("trapper")["last_error"]
    assert last.startswith("stack_overflow: handling the message: the agent's stack overflowed")
    assert "panicked" not in last
    (letter,) = node.debug("trapper")["dead_letters"]
    assert letter["details"]["cause"] == "stack_overflow"
    assert letter["details"]["trap_code"] == "memory_out_of_bounds"
    assert len(letter["details"]["backtrace"]) > 10
    assert "stack overflowed" in node.cli("debug", "trapper")


def _negotiate(node: Node, bidders: list[str]) -> dict[str, Any]:
    content = {"op": "start", "task": "build-widget", "bidders": bidders}
    reply = node.ask("manager", content)
    assert reply["sender"] == "manager"
    return reply


def test_the_rust_bidder_wins_and_loses_against_c_agents(built: Path, node: Node) -> None:
    node.deploy("manager", (EXAMPLES / "manager.wasm").read_bytes())
    c_bidder = (EXAMPLES / "bidder.wasm").read_bytes()
    node.deploy("bidder-a", c_bidder, PRICE="30")
    node.deploy("bidder-b", c_bidder, PRICE="20")
    node.deploy("bidder-c", c_bidder, REFUSE="1")
    node.deploy("cheap-rs", _module(built, "bidder"), PRICE="15")
    node.deploy("dear-rs", _module(built, "bidder"), PRICE="40")
    node.deploy("lazy-rs", _module(built, "bidder"), REFUSE="1")

    won = _negotiate(node, ["bidder-a", "cheap-rs", "bidder-b", "bidder-c"])
    assert won["performative"] == "inform"
    assert won["content"] == {"winner": "cheap-rs", "price": 15, "proposals": 3, "refusals": 1}

    lost = _negotiate(node, ["dear-rs", "bidder-b", "lazy-rs"])
    assert lost["performative"] == "inform"
    assert lost["content"] == {"winner": "bidder-b", "price": 20, "proposals": 2, "refusals": 1}

    def rejected() -> bool:
        return "bidder: proposal rejected" in [
            line["text"] for line in node.debug("dear-rs")["logs"]
        ]

    # The manager answers as it sends the loser its reject: the log line may come a moment later.
    wait_until(rejected, 5, what="dear-rs logged its rejection")

    nobody = _negotiate(node, ["lazy-rs", "bidder-c"])
    assert nobody["performative"] == "failure"
    assert nobody["content"] == {"reason": "no proposals"}
    # The Rust bidder's proposal carried its own reply_with, which the C manager answered.

    def won_contract() -> bool:
        logs = [line["text"] for line in node.debug("cheap-rs")["logs"]]
        return "bidder: won a contract at 15, task done" in logs

    wait_until(won_contract, 5, what="cheap-rs logged its contract")


# --------------------------------------------------------------------------- the docs


def _doc_files() -> dict[str, str]:
    """The files of docs/agents.md's Rust quick start (``<!-- file: NAME -->`` blocks)."""
    text = (ROOT / "docs" / "agents.md").read_text()
    files: dict[str, str] = {}
    for found in re.finditer(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, re.DOTALL):
        files[found.group(1)] = found.group(2)
    return files


def _doc_serde_source() -> str:
    text = (ROOT / "docs" / "agents.md").read_text()
    section = text[text.index("### With serde") :]
    found = re.search(r"```rust\n(.*?)```", section, re.DOTALL)
    assert found is not None
    return found.group(1)


def _cargo_build(project: Path) -> bytes:
    target = _rust_target()
    result = subprocess.run(
        [str(DEBIAN_CARGO), "build", "--quiet", "--release", "--target", target],
        cwd=project,
        env={**os.environ, "RUSTC": str(DEBIAN_RUSTC)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (module,) = (project / "target" / target / "release").glob("*.wasm")
    return module.read_bytes()


def _quick_start(project: Path, source: str | None = None) -> bytes:
    files = _doc_files()
    assert set(files) == {"Cargo.toml", ".cargo/config.toml", "src/lib.rs"}
    sdk = str(ROOT / "sdk" / "rust")
    files["Cargo.toml"] = files["Cargo.toml"].replace("/path/to/caxton/sdk/rust", sdk)
    if source is not None:  # the serde variant, as the docs say to change the dependencies
        files["src/lib.rs"] = source
        files["Cargo.toml"] = files["Cargo.toml"].replace(
            f'caxton = {{ path = "{sdk}" }}',
            f'caxton = {{ path = "{sdk}", features = ["serde"] }}\n'
            'serde = { version = "1", features = ["derive"] }',
        )
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    return _cargo_build(project)


def test_the_docs_rust_quick_start_builds_and_answers(
    built: Path, node: Node, tmp_path: Path
) -> None:
    greeter = _quick_start(tmp_path / "greeter")
    serde = _quick_start(tmp_path / "orders", _doc_serde_source())
    node.deploy("greeter", greeter)
    node.deploy("orders", serde)
    first = node.ask("greeter", {"name": 'Ada "the first"'})["content"]
    assert first == {"greeting": 'Hello, Ada "the first"!', "visits": 1}
    assert node.ask("greeter", {"name": "Bob"})["content"]["visits"] == 2
    assert node.ask("greeter", {"nom": "x"})["performative"] == "not_understood"
    assert any(line["text"] == "greeted Bob (visit 2)" for line in node.debug("greeter")["logs"])
    order = {"item": "widget", "qty": 3}
    assert node.ask("orders", order)["content"] == order
    assert node.ask("orders", {"item": 1})["performative"] == "not_understood"
