"""The example agents and WAT fixtures follow agent ABI v1 (docs/agents.md, "ABI v1 reference").

These tests need no Caxton runtime: they build the examples with
``scripts/build-agents.sh`` (clang + wasi-libc), check every module's exports and
imports against the ABI, and drive the agents through a tiny stand-in host written
with plain wasmtime-py (``AbiHost``) that does what the runtime's host does for
``send``, ``log`` and ``kv_*``: deliver with ``caxton_alloc`` + write +
``caxton_handle``, set ``sender`` on what the guest sends. So a failure here is a bug
in the SDK, an example or a fixture, never in the runtime.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from tests.support import EXAMPLES, ROOT, SDK, WAT

BUILD_SCRIPT = ROOT / "scripts" / "build-agents.sh"

SOURCES = sorted(p.stem for p in EXAMPLES.glob("*.c"))
COMMAND_SOURCES = {
    p.stem for p in EXAMPLES.glob("*.c") if "\n// caxton-mode: command" in p.read_text()
}
WAT_FIXTURES = sorted(p.name for p in WAT.glob("*.wat"))

# The caxton host functions of ABI v1: name -> (params, results).
CAXTON_IMPORTS: dict[str, tuple[list[str], list[str]]] = {
    "send": (["i32", "i32"], ["i32"]),
    "log": (["i32", "i32", "i32"], []),
    "kv_get": (["i32", "i32", "i32", "i32"], ["i32"]),
    "kv_set": (["i32", "i32", "i32", "i32"], ["i32"]),
    "kv_delete": (["i32", "i32"], ["i32"]),
    "schedule": (["i64", "i32", "i32"], ["i32"]),
}
REACTOR_EXPORTS: dict[str, tuple[list[str], list[str]]] = {
    "caxton_alloc": (["i32"], ["i32"]),
    "caxton_handle": (["i32", "i32"], ["i32"]),
    "_initialize": ([], []),
    "caxton_init": ([], ["i32"]),
}
I32 = wasmtime.ValType.i32()
I64 = wasmtime.ValType.i64()

ENGINE = wasmtime.Engine()

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- ABI check


def _sig(ty: wasmtime.FuncType) -> tuple[list[str], list[str]]:
    return [str(p) for p in ty.params], [str(r) for r in ty.results]


def abi_problems(module: wasmtime.Module) -> list[str]:
    """Everything that keeps ``module`` from being a valid ABI v1 agent (empty: valid)."""
    problems: list[str] = []
    for imp in module.imports:
        where = f"{imp.module}.{imp.name}"
        if imp.module == "wasi_snapshot_preview1":
            continue
        if imp.module != "caxton" or imp.name not in CAXTON_IMPORTS:
            problems.append(f"import {where} is neither WASI preview 1 nor a caxton function")
        elif not isinstance(imp.type, wasmtime.FuncType):
            problems.append(f"import {where} is not a function")
        elif _sig(imp.type) != CAXTON_IMPORTS[imp.name]:
            problems.append(f"import {where} has signature {_sig(imp.type)}")
    exports = {exp.name: exp.type for exp in module.exports}
    if "caxton_handle" in exports:
        if not isinstance(exports.get("memory"), wasmtime.MemoryType):
            problems.append("reactor does not export memory")
        if "caxton_alloc" not in exports:
            problems.append("reactor does not export caxton_alloc")
        for name, expected in REACTOR_EXPORTS.items():
            ty = exports.get(name)
            if ty is None:
                continue
            if not isinstance(ty, wasmtime.FuncType) or _sig(ty) != expected:
                problems.append(f"export {name} must have signature {expected}")
    elif "_start" in exports:
        start = exports["_start"]
        if not isinstance(start, wasmtime.FuncType) or _sig(start) != ([], []):
            problems.append("export _start must have signature () -> ()")
    else:
        problems.append("exports neither caxton_handle (reactor) nor _start (command)")
    return problems


# --------------------------------------------------------------------------- build


@pytest.fixture(scope="session")
def built_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples freshly built by scripts/build-agents.sh into a temp OUT_DIR."""
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed (apt-get install clang lld wasi-libc)")
    out = tmp_path_factory.mktemp("agents")
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), str(out)],
        cwd=tmp_path_factory.getbasetemp(),  # the script must work from any directory
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(params=["built", "committed"])
def agents_dir(request: pytest.FixtureRequest) -> Path:
    """Both the fresh build and the .wasm files committed next to the sources."""
    if request.param == "committed":
        return EXAMPLES
    return Path(request.getfixturevalue("built_dir"))


def test_build_script_builds_every_source(built_dir: Path) -> None:
    assert sorted(p.stem for p in built_dir.glob("*.wasm")) == SOURCES
    assert {"echo", "counter", "shout", "ping", "pong"} <= set(SOURCES)


def test_build_script_is_idempotent(built_dir: Path, tmp_path: Path) -> None:
    again = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        env={"PATH": "/usr/bin:/bin", "OUT_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    for name in SOURCES:
        assert (tmp_path / f"{name}.wasm").read_bytes() == (built_dir / f"{name}.wasm").read_bytes()


def test_build_script_names_the_packages_when_clang_is_missing(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run(
        [bash, str(BUILD_SCRIPT), str(tmp_path)],
        env={"PATH": "/nonexistent", "CC": "clang"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "clang lld wasi-libc" in result.stderr


def _clang_major() -> str | None:
    out = subprocess.run(["clang", "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"clang version (\d+)", out.stdout)
    return found.group(1) if found else None


@pytest.mark.parametrize("name", SOURCES)
def test_committed_wasm_is_up_to_date(built_dir: Path, name: str) -> None:
    """The committed modules were built from the current sources and SDK."""
    if _clang_major() != "14":
        pytest.skip("the committed modules are built with Debian clang 14")
    committed = EXAMPLES / f"{name}.wasm"
    assert committed.exists(), f"{committed} missing: run scripts/build-agents.sh"
    assert committed.read_bytes() == (built_dir / f"{name}.wasm").read_bytes(), (
        f"{committed} is stale: run scripts/build-agents.sh"
    )


@pytest.mark.parametrize("name", SOURCES)
def test_example_follows_the_abi(agents_dir: Path, name: str) -> None:
    module = wasmtime.Module.from_file(ENGINE, str(agents_dir / f"{name}.wasm"))
    assert abi_problems(module) == []
    exports = {exp.name: exp.type for exp in module.exports}
    if name in COMMAND_SOURCES:
        assert "_start" in exports
        assert "caxton_handle" not in exports
        assert all(imp.module == "wasi_snapshot_preview1" for imp in module.imports)
    else:
        assert {"memory", "caxton_alloc", "caxton_handle", "_initialize"} <= set(exports)
        assert "_start" not in exports
    memory = exports["memory"]
    assert isinstance(memory, wasmtime.MemoryType)
    assert memory.limits.min == 1  # 64 KiB initial memory per agent (see build-agents.sh)


# --------------------------------------------------------------------------- fixtures


@pytest.mark.parametrize("name", WAT_FIXTURES)
def test_fixture_compiles(name: str) -> None:
    text = (WAT / name).read_text()
    assert text.startswith(";; "), "each fixture starts with a comment saying what it is for"
    wasmtime.Module(ENGINE, text)


EXPECTED_PROBLEM = {
    "bad_import.wat": "import env.foo",
    "no_handle.wat": "neither caxton_handle",
    "wrong_sig.wat": "export caxton_handle must have signature",
}


@pytest.mark.parametrize("name", WAT_FIXTURES)
def test_fixture_abi_validity(name: str) -> None:
    """Only the fixtures meant to be refused at deploy time break the ABI."""
    problems = abi_problems(wasmtime.Module(ENGINE, (WAT / name).read_text()))
    if name in EXPECTED_PROBLEM:
        assert len(problems) == 1
        assert EXPECTED_PROBLEM[name] in problems[0]
    else:
        assert problems == []


def test_every_fixture_named_in_the_brief_exists() -> None:
    wanted = {
        "echo", "nop", "fail", "trap", "spin", "membomb", "recursion", "logspam",
        "init_fail", "init_spin", "bad_import", "no_handle", "command_exit3",
        "kvcount", "bigmem", "wrong_sig",
    }  # fmt: skip
    assert wanted <= {Path(n).stem for n in WAT_FIXTURES}


# --------------------------------------------------------------------------- stand-in host


@dataclass
class Sent:
    """One message a guest sent (after the host set ``sender``)."""

    sender: str
    message: dict[str, Any]

    @property
    def receiver(self) -> Any:
        return self.message["receiver"]


@dataclass
class AbiHost:
    """The runtime's side of ABI v1, reduced to what the tests need.

    ``kv`` maps agent name -> key -> value and outlives instances, like the
    durable store; ``outbox`` collects every ``send``; ``logs`` every ``log``.
    """

    config: wasmtime.Config | None = None
    kv: dict[str, dict[bytes, bytes]] = field(default_factory=dict)
    outbox: list[Sent] = field(default_factory=list)
    logs: list[tuple[str, int, bytes]] = field(default_factory=list)
    log_calls: int = 0
    send_result: int = 0
    keep_log_text: bool = True

    def __post_init__(self) -> None:
        self.engine = wasmtime.Engine(self.config) if self.config else ENGINE

    def spawn(self, module: wasmtime.Module | Path | str, name: str) -> Agent:
        """Instantiate a reactor agent called ``name`` (runs _initialize and caxton_init)."""
        if isinstance(module, Path):
            module = (
                wasmtime.Module(self.engine, module.read_text())
                if module.suffix == ".wat"
                else wasmtime.Module.from_file(self.engine, str(module))
            )
        elif isinstance(module, str):
            module = wasmtime.Module(self.engine, module)
        store = wasmtime.Store(self.engine)
        wasi = wasmtime.WasiConfig()
        wasi.argv = [name]
        store.set_wasi(wasi)
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        self._define_caxton(linker, name)
        instance = linker.instantiate(store, module)
        return Agent(self, name, store, instance)

    def _define_caxton(self, linker: wasmtime.Linker, name: str) -> None:
        kv = self.kv.setdefault(name, {})

        def mem(caller: wasmtime.Caller) -> wasmtime.Memory:
            memory = caller.get("memory")
            assert isinstance(memory, wasmtime.Memory)
            return memory

        def read(caller: wasmtime.Caller, ptr: int, length: int) -> bytes:
            return bytes(mem(caller).read(caller, ptr, ptr + length))

        def send(caller: wasmtime.Caller, ptr: int, length: int) -> int:
            message = json.loads(read(caller, ptr, length))
            assert isinstance(message, dict)
            message["sender"] = name
            self.outbox.append(Sent(name, message))
            return self.send_result

        def log(caller: wasmtime.Caller, level: int, ptr: int, length: int) -> None:
            self.log_calls += 1
            if self.keep_log_text:
                self.logs.append((name, level, read(caller, ptr, length)))

        def kv_get(caller: wasmtime.Caller, kp: int, kl: int, vp: int, vcap: int) -> int:
            value = kv.get(read(caller, kp, kl))
            if value is None:
                return -1
            if len(value) <= vcap:
                mem(caller).write(caller, value, vp)
            return len(value)

        def kv_set(caller: wasmtime.Caller, kp: int, kl: int, vp: int, vl: int) -> int:
            kv[read(caller, kp, kl)] = read(caller, vp, vl)
            return 0

        def kv_delete(caller: wasmtime.Caller, kp: int, kl: int) -> int:
            return 0 if kv.pop(read(caller, kp, kl), None) is not None else -1

        def schedule(caller: wasmtime.Caller, delay: int, ptr: int, length: int) -> int:
            raise AssertionError("no example uses schedule")

        funcs: dict[str, Callable[..., Any]] = {
            "send": send,
            "log": log,
            "kv_get": kv_get,
            "kv_set": kv_set,
            "kv_delete": kv_delete,
            "schedule": schedule,
        }
        for fname, (params, results) in CAXTON_IMPORTS.items():
            ty = wasmtime.FuncType(
                [I64 if p == "i64" else I32 for p in params], [I32 for _ in results]
            )
            linker.define_func("caxton", fname, ty, funcs[fname], access_caller=True)

    def take(self) -> list[dict[str, Any]]:
        """The messages sent since the last take()."""
        sent = [s.message for s in self.outbox]
        self.outbox.clear()
        return sent

    def route(self, agents: dict[str, Agent], limit: int = 100_000) -> list[dict[str, Any]]:
        """Deliver queued messages to ``agents`` until only outside receivers are left."""
        outside: list[dict[str, Any]] = []
        delivered = 0
        while self.outbox:
            message = self.outbox.pop(0).message
            target = agents.get(message["receiver"])
            if target is None:
                outside.append(message)
                continue
            assert target.deliver(message) == 0
            delivered += 1
            assert delivered <= limit, "messages keep flowing"
        return outside


@dataclass
class Agent:
    """One reactor instance in an ``AbiHost``."""

    host: AbiHost
    name: str
    store: wasmtime.Store
    instance: wasmtime.Instance
    init_result: int | None = None

    def __post_init__(self) -> None:
        exports = self.instance.exports(self.store)
        for export in ("_initialize", "caxton_init"):
            func = exports.get(export)
            if isinstance(func, wasmtime.Func):
                result = func(self.store)
                if export == "caxton_init":
                    self.init_result = result

    def _func(self, name: str) -> wasmtime.Func:
        func = self.instance.exports(self.store)[name]
        assert isinstance(func, wasmtime.Func)
        return func

    def deliver_bytes(self, data: bytes) -> int:
        """caxton_alloc(len), write exactly len bytes, caxton_handle(ptr, len)."""
        ptr = self._func("caxton_alloc")(self.store, len(data))
        memory = self.instance.exports(self.store)["memory"]
        assert isinstance(memory, wasmtime.Memory)
        memory.write(self.store, data, ptr)
        result = self._func("caxton_handle")(self.store, ptr, len(data))
        assert isinstance(result, int)
        return result

    def deliver(self, message: dict[str, Any]) -> int:
        return self.deliver_bytes(json.dumps(message, separators=(",", ":")).encode())

    def read_i32(self, address: int) -> int:
        memory = self.instance.exports(self.store)["memory"]
        assert isinstance(memory, wasmtime.Memory)
        return int.from_bytes(memory.read(self.store, address, address + 4), "little")


def request(content: Any, *, sender: str = "client", receiver: str = "agent") -> dict[str, Any]:
    return {
        "sender": sender,
        "receiver": receiver,
        "performative": "request",
        "content": content,
        "message_id": "m-1",
        "conversation_id": "c-1",
        "reply_with": "r-1",
    }


@pytest.fixture
def host() -> AbiHost:
    return AbiHost()


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize(
    "content",
    [
        {"hello": "world"},
        ["a", 1, None, True, {"x": [1, 2, {"y": "}"}]}],
        'quotes " and \\ and \n and é and 😀',
        42,
        None,
    ],
)
def test_echo_replies_inform_with_the_same_content(
    agents_dir: Path, host: AbiHost, content: Any
) -> None:
    echo = host.spawn(agents_dir / "echo.wasm", "echo")
    assert echo.deliver(request(content, receiver="echo")) == 0
    assert host.take() == [
        {"receiver": "client", "performative": "inform", "content": content, "sender": "echo"}
    ]


def test_echo_without_content_replies_null(agents_dir: Path, host: AbiHost) -> None:
    echo = host.spawn(agents_dir / "echo.wasm", "echo")
    assert echo.deliver({"sender": "bob", "receiver": "echo", "performative": "inform"}) == 0
    assert host.take()[0]["content"] is None


def test_echo_fails_a_message_it_cannot_reply_to(agents_dir: Path, host: AbiHost) -> None:
    echo = host.spawn(agents_dir / "echo.wasm", "echo")
    assert echo.deliver({"receiver": "echo", "performative": "inform", "content": 1}) == 1
    assert echo.deliver_bytes(b"not json") == 1
    assert host.take() == []
    # and it keeps working
    assert echo.deliver(request(7)) == 0
    assert host.take()[0]["content"] == 7


def test_echo_does_not_leak_across_many_messages(agents_dir: Path, host: AbiHost) -> None:
    echo = host.spawn(agents_dir / "echo.wasm", "echo")
    big = "x" * 200_000
    for _ in range(30):
        assert echo.deliver(request(big)) == 0
        host.take()
    memory = echo.instance.exports(echo.store)["memory"]
    assert isinstance(memory, wasmtime.Memory)
    # one inbound buffer at a time: 30 x 200 KB did not pile up
    assert memory.size(echo.store) * 65536 < 2_000_000


def counts(message: dict[str, Any]) -> tuple[int, int]:
    assert message["performative"] == "inform"
    assert message["receiver"] == "client"
    content = message["content"]
    return content["memory_count"], content["kv_count"]


def test_counter_counts_in_memory_and_in_kv(agents_dir: Path, host: AbiHost) -> None:
    counter = host.spawn(agents_dir / "counter.wasm", "counter")
    for expected in (1, 2, 3):
        assert counter.deliver(request({"anything": expected})) == 0
        assert [counts(m) for m in host.take()] == [(expected, expected)]
    assert host.kv["counter"] == {b"count": b"3"}

    # a restart: a fresh instance, the same durable kv
    restarted = host.spawn(agents_dir / "counter.wasm", "counter")
    assert restarted.deliver(request("again")) == 0
    assert [counts(m) for m in host.take()] == [(1, 4)]

    assert restarted.deliver(request({"op": "reset"})) == 0
    assert [counts(m) for m in host.take()] == [(0, 0)]
    assert host.kv["counter"] == {}
    assert restarted.deliver(request(None)) == 0
    assert [counts(m) for m in host.take()] == [(1, 1)]


def test_ping_pong_plays_n_round_trips(agents_dir: Path, host: AbiHost) -> None:
    agents = {
        "ping": host.spawn(agents_dir / "ping.wasm", "ping"),
        "pong": host.spawn(agents_dir / "pong.wasm", "pong"),
    }
    start = request({"op": "start", "peer": "pong", "n": 50}, sender="bench", receiver="ping")
    assert agents["ping"].deliver(start) == 0
    first = host.outbox[0].message
    assert first == {
        "receiver": "pong",
        "performative": "request",
        "content": {"i": 1},
        "sender": "ping",
    }
    outside = host.route(agents)
    assert outside == [
        {"receiver": "bench", "performative": "inform", "content": {"done": 50}, "sender": "ping"}
    ]
    # the game is over: a late inform is ignored
    late = {"sender": "pong", "receiver": "ping", "performative": "inform", "content": {"i": 3}}
    assert agents["ping"].deliver(late) == 0
    assert host.take() == []


def test_pong_answers_requests_only(agents_dir: Path, host: AbiHost) -> None:
    pong = host.spawn(agents_dir / "pong.wasm", "pong")
    assert pong.deliver(request({"i": 9}, sender="ping")) == 0
    assert host.take() == [
        {"receiver": "ping", "performative": "inform", "content": {"i": 9}, "sender": "pong"}
    ]
    assert pong.deliver({"sender": "x", "receiver": "pong", "performative": "inform"}) == 0
    assert host.take() == []


@pytest.mark.parametrize(
    ("content", "n"),
    [({"op": "start", "peer": "pong", "n": 0}, 0), ({"op": "start", "peer": "pong", "n": -3}, 0)],
)
def test_ping_with_nothing_to_play_is_done_at_once(
    agents_dir: Path, host: AbiHost, content: dict[str, Any], n: int
) -> None:
    ping = host.spawn(agents_dir / "ping.wasm", "ping")
    assert ping.deliver(request(content)) == 0
    assert [(m["receiver"], m["content"]) for m in host.take()] == [("client", {"done": n})]


@pytest.mark.parametrize(
    "content", [{"op": "start", "n": 3}, {"op": "start", "peer": "pong"}, {"op": "stop"}, "start"]
)
def test_ping_answers_a_bad_start_with_not_understood(
    agents_dir: Path, host: AbiHost, content: Any
) -> None:
    ping = host.spawn(agents_dir / "ping.wasm", "ping")
    assert ping.deliver(request(content)) == 0
    [reply] = host.take()
    assert reply["receiver"] == "client"
    assert reply["performative"] == "not_understood"
    assert "error" in reply["content"]


@dataclass
class CommandRun:
    exit_code: int
    stdout: str
    stderr: str


def run_command(path: Path, stdin: bytes, tmp_path: Path, name: str = "shout") -> CommandRun:
    """Run a command agent the way the runtime does: fresh instance, message on stdin."""
    (tmp_path / "stdin").write_bytes(stdin)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [name]
    wasi.stdin_file = str(tmp_path / "stdin")
    wasi.stdout_file = str(tmp_path / "stdout")
    wasi.stderr_file = str(tmp_path / "stderr")
    store = wasmtime.Store(ENGINE)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(ENGINE)
    linker.define_wasi()
    module = (
        wasmtime.Module(ENGINE, path.read_text())
        if path.suffix == ".wat"
        else wasmtime.Module.from_file(ENGINE, str(path))
    )
    instance = linker.instantiate(store, module)
    start = instance.exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    try:
        start(store)
        code = 0
    except wasmtime.ExitTrap as exit_trap:
        code = exit_trap.code
    return CommandRun(code, (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text())


@pytest.mark.parametrize(
    ("content", "shouted"),
    [
        ("hello, World é", "HELLO, WORLD é"),
        ("grin 😀 ok", "GRIN 😀 OK"),
        ('say "hi"\nplease', 'SAY "HI"\nPLEASE'),
        ({"a": [1, True, None]}, '{"A":[1,TRUE,NULL]}'),
        (12, "12"),
    ],
)
def test_shout_replies_with_the_content_upper_cased(
    agents_dir: Path, tmp_path: Path, content: Any, shouted: str
) -> None:
    message = json.dumps(request(content, receiver="shout"), separators=(",", ":"))
    run = run_command(agents_dir / "shout.wasm", message.encode(), tmp_path)
    assert run.exit_code == 0
    lines = run.stdout.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {
        "receiver": "client",
        "performative": "inform",
        "content": shouted,
    }
    assert run.stderr.startswith("shout: ")


@pytest.mark.parametrize("stdin", [b"", b"[1,2]", b'{"a":', b"hello", b"{} {}"])
def test_shout_exits_2_when_stdin_is_not_an_object(
    agents_dir: Path, tmp_path: Path, stdin: bytes
) -> None:
    run = run_command(agents_dir / "shout.wasm", stdin, tmp_path)
    assert run.exit_code == 2
    assert run.stdout == ""
    assert "not a JSON object" in run.stderr


# --------------------------------------------------------------------------- WAT fixtures


def test_wat_echo_sends_the_message_back_as_content(host: AbiHost) -> None:
    echo = host.spawn(WAT / "echo.wat", "echo")
    message = request({"x": "y"}, sender="alice", receiver="echo")
    assert echo.deliver(message) == 0
    assert host.take() == [
        {"receiver": "alice", "performative": "inform", "content": message, "sender": "echo"}
    ]
    spaced = b'{"receiver": "echo", "sender" : "bob", "content": 1}'
    assert echo.deliver_bytes(spaced) == 0
    [reply] = host.take()
    assert reply["receiver"] == "bob"
    assert reply["content"] == json.loads(spaced)
    assert echo.deliver({"receiver": "echo", "content": 1}) == 1
    host.send_result = -4
    assert echo.deliver(message) == 1


@pytest.mark.parametrize(("fixture", "result"), [("nop.wat", 0), ("fail.wat", 1)])
def test_wat_handle_results(host: AbiHost, fixture: str, result: int) -> None:
    agent = host.spawn(WAT / fixture, "a")
    for _ in range(3):
        assert agent.deliver(request({"big": "z" * 100_000})) == result


@pytest.mark.parametrize("fixture", ["trap.wat", "recursion.wat"])
def test_wat_traps(host: AbiHost, fixture: str) -> None:
    agent = host.spawn(WAT / fixture, "a")
    with pytest.raises(wasmtime.Trap):
        agent.deliver(request(1))


def test_wat_membomb_traps_at_the_memory_limit(host: AbiHost) -> None:
    agent = host.spawn(WAT / "membomb.wat", "a")
    agent.store.set_limits(memory_size=8 * 1024 * 1024)
    with pytest.raises(wasmtime.Trap):
        agent.deliver(request(1))
    memory = agent.instance.exports(agent.store)["memory"]
    assert isinstance(memory, wasmtime.Memory)
    assert memory.size(agent.store) <= 128


def test_wat_spin_is_stopped_by_fuel() -> None:
    config = wasmtime.Config()
    config.consume_fuel = True
    host = AbiHost(config=config)
    agent = host.spawn(WAT / "spin.wat", "a")
    agent.store.set_fuel(1_000_000)
    with pytest.raises(wasmtime.Trap):
        agent.deliver(request(1))


def test_wat_init_spin_is_stopped_by_fuel() -> None:
    config = wasmtime.Config()
    config.consume_fuel = True
    host = AbiHost(config=config)
    module = wasmtime.Module(host.engine, (WAT / "init_spin.wat").read_text())
    store = wasmtime.Store(host.engine)
    store.set_fuel(1_000_000)
    instance = wasmtime.Linker(host.engine).instantiate(store, module)
    init = instance.exports(store)["caxton_init"]
    assert isinstance(init, wasmtime.Func)
    with pytest.raises(wasmtime.Trap):
        init(store)


def test_wat_init_fail_returns_7(host: AbiHost) -> None:
    assert host.spawn(WAT / "init_fail.wat", "a").init_result == 7


def test_wat_logspam_logs_64_mib(host: AbiHost) -> None:
    host.keep_log_text = False
    agent = host.spawn(WAT / "logspam.wat", "a")
    assert agent.deliver(request(1)) == 0
    assert host.log_calls == 1000


def test_wat_kvcount_counts_across_restarts(host: AbiHost) -> None:
    for expected in (1, 2):
        agent = host.spawn(WAT / "kvcount.wat", "kv")
        assert agent.deliver(request("x", sender="carol")) == 0
        assert host.take() == [
            {"receiver": "carol", "performative": "inform", "content": expected, "sender": "kv"}
        ]
    assert agent.deliver(request("x")) == 0
    assert host.take()[0]["content"] == 3
    assert host.kv["kv"] == {b"count": b"3"}


def test_wat_bigmem_keeps_its_counter_in_memory(host: AbiHost) -> None:
    agent = host.spawn(WAT / "bigmem.wat", "big")
    memory = agent.instance.exports(agent.store)["memory"]
    assert isinstance(memory, wasmtime.Memory)
    assert memory.size(agent.store) == 16
    for expected in (1, 2, 3):
        assert agent.deliver(request(None)) == 0
        assert host.take()[0]["content"] == expected
    assert agent.read_i32(0x80000) == agent.read_i32(0xFFFFC) == 3
    # a partial restore (the two copies differ) fails the message
    memory.write(agent.store, (0).to_bytes(4, "little"), 0xFFFFC)
    assert agent.deliver(request(None)) == 1


def test_wat_command_exit3(tmp_path: Path) -> None:
    run = run_command(WAT / "command_exit3.wat", b"{}", tmp_path, name="exit3")
    assert run.exit_code == 3
    assert run.stdout == ""


def test_abi_host_rejects_the_bad_fixtures(host: AbiHost) -> None:
    """What a runtime that links only WASI + caxton sees for bad_import.wat."""
    with pytest.raises(wasmtime.WasmtimeError, match="foo"):
        host.spawn(WAT / "bad_import.wat", "a")


# --------------------------------------------------------------------------- SDK helpers

SDK_SELF_TEST = r"""
#define CAXTON_COMMAND 1
#include "caxton.h"

static int failures;
#define CHECK(cond) do { if (!(cond)) { printf("FAIL line %d: %s\n", __LINE__, #cond); \
    failures++; } } while (0)

int main(void) {
    const char *j = " { \"a\" : [1, {\"b\": \"}\"}], "
                    "\"s\\u0074r\": \"x\\\"y\\\\z\\n\\u00e9\\ud83d\\ude00\","
                    " \"n\": -42, \"f\": 1.5, \"big\": 99999999999999999999, \"o\": {\"i\": 7} } ";
    size_t len = strlen(j);
    const char *v; size_t vl; char out[64]; int64_t n = 0;

    CHECK(caxton_json_field(j, len, "a", &v, &vl) == 0 && vl == 15);
    CHECK(memcmp(v, "[1, {\"b\": \"}\"}]", 15) == 0);
    CHECK(caxton_json_field(j, len, "missing", &v, &vl) == CAXTON_JSON_NOT_FOUND);
    CHECK(caxton_json_field("[1]", 3, "a", &v, &vl) == CAXTON_ERR_MALFORMED);
    CHECK(caxton_json_field("{\"a\":", 5, "a", &v, &vl) == CAXTON_ERR_MALFORMED);
    CHECK(caxton_json_field("{\"a\":\"x", 7, "a", &v, &vl) == CAXTON_ERR_MALFORMED);
    CHECK(caxton_json_field("{}", 2, "a", &v, &vl) == CAXTON_JSON_NOT_FOUND);
    /* the key "s\u0074r" is "str" */
    CHECK(caxton_json_get_string(j, len, "str", out, sizeof out) == 12);
    CHECK(memcmp(out, "x\"y\\z\n\xc3\xa9\xf0\x9f\x98\x80", 13) == 0);
    CHECK(caxton_json_get_string(j, len, "str", out, 5) == CAXTON_ERR_TOO_LARGE);
    CHECK(caxton_json_get_string(j, len, "n", out, sizeof out) == CAXTON_JSON_WRONG_TYPE);
    CHECK(caxton_json_get_int(j, len, "n", &n) == 0 && n == -42);
    CHECK(caxton_json_get_int(j, len, "f", &n) == CAXTON_JSON_WRONG_TYPE);
    CHECK(caxton_json_get_int(j, len, "big", &n) == CAXTON_ERR_TOO_LARGE);
    CHECK(caxton_json_get_int(j, len, "s", &n) == CAXTON_JSON_NOT_FOUND);
    CHECK(caxton_json_field(j, len, "o", &v, &vl) == 0);
    CHECK(caxton_json_get_int(v, vl, "i", &n) == 0 && n == 7);
    CHECK(caxton_json_is_object(j, len));
    CHECK(!caxton_json_is_object("{} x", 4));
    CHECK(caxton_json_unescape("\\ud83d", 6, out, sizeof out) == 3);  /* lone surrogate: U+FFFD */
    CHECK(caxton_json_unescape("\\q", 2, out, sizeof out) == CAXTON_ERR_MALFORMED);
    CHECK(caxton_json_unescape("\\u12", 4, out, sizeof out) == CAXTON_ERR_MALFORMED);

    CHECK(caxton_json_escape("a\"b\\\n\x01", 6, out, sizeof out) == 14);
    CHECK(strcmp(out, "a\\\"b\\\\\\n\\u0001") == 0);
    CHECK(caxton_json_escape("abc", 3, out, 3) == CAXTON_ERR_TOO_LARGE);

    caxton_sb sb; char buf[32];
    caxton_sb_init(&sb, buf, sizeof buf);
    caxton_sb_cstr(&sb, "{\"n\":"); caxton_sb_int(&sb, INT64_MIN); caxton_sb_char(&sb, '}');
    CHECK(caxton_sb_finish(&sb) == 26 && strcmp(buf, "{\"n\":-9223372036854775808}") == 0);
    caxton_sb_init(&sb, buf, 4);
    caxton_sb_cstr(&sb, "abc");
    CHECK(caxton_sb_finish(&sb) == 3);
    caxton_sb_char(&sb, 'd');
    CHECK(caxton_sb_finish(&sb) == CAXTON_ERR_TOO_LARGE && strcmp(buf, "abc") == 0);
    caxton_sb_init(&sb, buf, sizeof buf);
    caxton_sb_json_str(&sb, "tab\there", 8); caxton_sb_int(&sb, 0);
    CHECK(strcmp(buf, "\"tab\\there\"0") == 0);

    char msg[128];
    caxton_sb_init(&sb, msg, sizeof msg);
    caxton_msg_begin(&sb, "\"bob\"", 5, "inform");
    caxton_msg_str(&sb, "protocol", "fipa-\"x\"");
    caxton_msg_int(&sb, "n", -7);
    caxton_msg_raw(&sb, "content", "{\"a\":[1]}", 9);
    CHECK(caxton_msg_end(&sb) == 93);
    CHECK(strcmp(msg, "{\"receiver\":\"bob\",\"performative\":\"inform\","
                      "\"protocol\":\"fipa-\\\"x\\\"\",\"n\":-7,\"content\":{\"a\":[1]}}") == 0);
    caxton_sb_init(&sb, msg, 30);
    caxton_msg_begin(&sb, "\"bob\"", 5, "inform");
    CHECK(caxton_msg_send(&sb) == CAXTON_ERR_TOO_LARGE);  /* nothing is sent */
    caxton_sb_init(&sb, msg, sizeof msg);
    caxton_msg_begin(&sb, "[\"a\",\"b\"]", 9, "cfp");
    caxton_msg_raw(&sb, "content", "null", 4);
    CHECK(caxton_msg_send(&sb) == 0);  /* a command agent's send: one stdout line */

    printf("%d failures\n", failures);
    return failures != 0;
}
"""


def test_sdk_json_helpers(tmp_path: Path) -> None:
    """The header's JSON helpers and string builder, compiled and run as a WASI program."""
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed (apt-get install clang lld wasi-libc)")
    source = tmp_path / "selftest.c"
    source.write_text(SDK_SELF_TEST)
    wasm = tmp_path / "selftest.wasm"
    subprocess.run(
        ["clang", "--target=wasm32-wasi", "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror",
         "-mexec-model=command", "-I", str(SDK), "-o", str(wasm), str(source)],
        check=True,
    )  # fmt: skip
    run = run_command(wasm, b"", tmp_path, name="selftest")
    assert run.stdout.endswith(
        '{"receiver":["a","b"],"performative":"cfp","content":null}\n0 failures\n'
    ), run.stdout
    assert run.exit_code == 0
