"""Clean-room contract tests for the agent ABI v1 and the message API.

Written only from DESIGN.md (sections 2-5): the agents in this directory declare the
``caxton`` host imports themselves, and the node is driven only through the command line
(``python -m caxton serve --config FILE``) and the HTTP API. Nothing here imports caxton.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CALLER = "cleanroom-tester"

# A reactor that accepts every message and never answers (for the ?wait timeout).
SILENT_WAT = """
(module
  (memory (export "memory") 2)
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 65536))
  (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0)))
"""

# Imports a `caxton` function that section 2 does not list: must be refused at deploy.
BOGUS_IMPORT_WAT = """
(module
  (import "caxton" "teleport" (func (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0)))
"""


# Traps on every message: the message fails, a `failure` reply goes back, the node lives.
TRAP_WAT = """
(module
  (memory (export "memory") 2)
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 65536))
  (func (export "caxton_handle") (param i32 i32) (result i32) unreachable))
"""


# --------------------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Response:
    status: int
    body: Any
    raw: bytes = b""


@dataclass
class Node:
    """One `caxton serve` subprocess, reachable only over HTTP."""

    config: Path
    workdir: Path
    api: str = ""
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)

    def start(self, timeout: float = 30.0) -> None:
        ports = {k: _free_port() for k in ("api", "metrics", "admin")}
        state = self.workdir / "state" / "local.db"
        state.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            "[networking]\n"
            f'bind_address = "127.0.0.1:{ports["api"]}"\n'
            f'metrics_address = "127.0.0.1:{ports["metrics"]}"\n'
            f'admin_address = "127.0.0.1:{ports["admin"]}"\n'
            "\n[coordination]\n"
            f'local_state_path = "{state}"\n'
        )
        self.api = f"http://127.0.0.1:{ports['api']}"
        n = len(list(self.workdir.glob("node-*.log")))
        self.log_path = self.workdir / f"node-{n}.log"
        log = self.log_path.open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAXTON_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "caxton", "serve", "--config", str(self.config)],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"node exited with {self.proc.returncode}:\n{self.log_path.read_text()}"
                )
            try:
                if (
                    self.request("GET", "/health").status == 200
                    and self.request("GET", "/ready").status == 200
                ):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"node not ready in {timeout}s:\n{self.log_path.read_text()}")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait, return the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("node ignored SIGTERM") from None
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Response:
        if body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(self.api + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return Response(status, parsed, raw)

    # ---- contract-level operations

    def deploy_json(self, name: str, wasm: bytes) -> Response:
        return self.request(
            "POST", "/api/v1/agents", {"name": name, "wasm": base64.b64encode(wasm).decode()}
        )

    def deploy_raw(self, name: str, wasm: bytes) -> Response:
        return self.request(
            "POST", f"/api/v1/agents?name={name}", data=wasm, content_type="application/wasm"
        )

    def send(self, msg: dict[str, Any], wait: str | None = "5s") -> Response:
        path = "/api/v1/messages" + (f"?wait={wait}" if wait else "")
        r = self.request("POST", path, msg)
        if r.status == 404 and not isinstance(r.body, dict):
            pytest.fail(f"POST /api/v1/messages is not routed: {r.raw!r}")
        return r


def _reply_of(body: Any) -> dict[str, Any]:
    """The message in a 200 answer to ``?wait``.

    DESIGN.md says the answer is "the first message that comes back"; it does not say
    whether it is the bare message or wrapped. Accept a bare message, or one under a
    ``reply``/``message`` key.
    """
    assert isinstance(body, dict), body
    if "performative" in body:
        return body
    for key in ("reply", "message"):
        inner = body.get(key)
        if isinstance(inner, dict):
            return inner
    raise AssertionError(f"no message in ?wait answer: {body}")


def _messages_of(body: Any) -> list[dict[str, Any]]:
    """Messages of ``GET /api/v1/conversations/{id}`` (a list, or under ``messages``)."""
    if isinstance(body, list):
        return body
    assert isinstance(body, dict), body
    msgs = body.get("messages")
    assert isinstance(msgs, list), body
    return msgs


def _assert_error(r: Response, status: int, code: str) -> None:
    assert r.status == status, (r.status, r.raw)
    assert isinstance(r.body, dict), r.raw
    err = r.body.get("error")
    assert isinstance(err, dict), r.body
    assert err.get("code") == code, r.body
    assert {"code", "message", "details"} <= set(err), err


# --------------------------------------------------------------------------- fixtures


def _build_c(tmp_path_factory: pytest.TempPathFactory, source: str) -> bytes:
    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("clang is not installed")
    out = tmp_path_factory.mktemp("cleanroom-build") / source.replace(".c", ".wasm")
    proc = subprocess.run(
        [
            clang,
            "--target=wasm32-wasi",
            "-O2",
            "-mexec-model=reactor",
            "-Wl,--strip-all",
            "-Wall",
            "-Werror",
            "-o",
            str(out),
            str(HERE / source),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


@pytest.fixture(scope="session")
def greeter_wasm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _build_c(tmp_path_factory, "greeter.c")


@pytest.fixture(scope="session")
def probe_wasm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _build_c(tmp_path_factory, "probe.c")


@pytest.fixture(scope="session")
def upper_wasm() -> bytes:
    wasmtime = pytest.importorskip("wasmtime")
    return bytes(wasmtime.wat2wasm((HERE / "upper.wat").read_text()))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(config=tmp_path / "caxton.toml", workdir=tmp_path)
    try:
        n.start()
        yield n
    finally:
        n.kill()


# --------------------------------------------------------------------------- tests


def test_node_answers_health_and_ready(node: Node) -> None:
    assert node.request("GET", "/health").status == 200
    assert node.request("GET", "/ready").status == 200


def test_deploy_greeter_as_json_base64(node: Node, greeter_wasm: bytes) -> None:
    r = node.deploy_json("greeter", greeter_wasm)
    assert r.status == 201, r.raw
    assert isinstance(r.body, dict)
    assert r.body.get("name") == "greeter", r.body
    shown = node.request("GET", "/api/v1/agents/greeter")
    assert shown.status == 200, shown.raw
    assert shown.body.get("name") == "greeter"
    _assert_error(node.deploy_json("greeter", greeter_wasm), 409, "AGENT_ALREADY_EXISTS")


def test_deploy_upper_as_raw_application_wasm(node: Node, upper_wasm: bytes) -> None:
    r = node.deploy_raw("upper", upper_wasm)
    assert r.status == 201, r.raw
    assert r.body.get("name") == "upper", r.body
    listed = node.request("GET", "/api/v1/agents")
    assert listed.status == 200, listed.raw
    assert "upper" in listed.raw.decode()


def test_deploy_refuses_garbage_and_unknown_imports(node: Node) -> None:
    _assert_error(node.deploy_raw("junk", b"\0asm-not-really"), 400, "INVALID_WASM")
    import wasmtime

    r = node.deploy_json("bogus", bytes(wasmtime.wat2wasm(BOGUS_IMPORT_WAT)))
    assert r.status == 400, r.raw
    assert "teleport" in r.raw.decode(), "the error must name the refused import"
    _assert_error(
        node.deploy_json("Bad_Name", bytes(wasmtime.wat2wasm(SILENT_WAT))), 400, "INVALID_REQUEST"
    )


def test_upper_replies_inform_with_fixed_content(node: Node, upper_wasm: bytes) -> None:
    assert node.deploy_raw("upper", upper_wasm).status == 201
    conv = f"conv-{uuid.uuid4()}"
    r = node.send(
        {
            "performative": "request",
            "sender": CALLER,
            "receiver": "upper",
            "content": "shout this",
            "conversation_id": conv,
            "reply_with": "upper-q1",
        }
    )
    assert r.status == 200, r.raw
    reply = _reply_of(r.body)
    assert reply["sender"] == "upper"
    assert reply["receiver"] in (CALLER, [CALLER])
    assert reply["performative"] == "inform"
    assert reply["content"] == "HELLO FROM WAT"
    assert reply["conversation_id"] == conv
    assert reply["in_reply_to"] == "upper-q1"
    assert reply.get("message_id"), "the runtime sets message_id"
    assert reply.get("created_at"), "the runtime sets created_at"


def test_accepted_message_then_conversation(node: Node, upper_wasm: bytes) -> None:
    """Without ?wait: 202 {message_id, conversation_id}; the reply shows up in the
    conversation, in order after the request."""
    assert node.deploy_raw("upper", upper_wasm).status == 201
    r = node.send(
        {"performative": "query-if", "sender": CALLER, "receiver": "upper", "content": 1},
        wait=None,
    )
    assert r.status == 202, r.raw
    assert set(r.body) >= {"message_id", "conversation_id"}, r.body
    conv = r.body["conversation_id"]
    deadline = time.monotonic() + 10
    msgs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        c = node.request("GET", f"/api/v1/conversations/{conv}")
        if c.status == 200:
            msgs = _messages_of(c.body)
            if len(msgs) >= 2:
                break
        time.sleep(0.1)
    assert len(msgs) == 2, msgs
    first, second = msgs
    assert first["message_id"] == r.body["message_id"]
    assert first["performative"] == "query_if", "hyphen spelling is accepted, stored with _"
    assert second["sender"] == "upper"
    assert second["performative"] == "inform"
    assert all(m["conversation_id"] == conv for m in msgs)


def test_wait_times_out_with_504(node: Node) -> None:
    import wasmtime

    assert node.deploy_json("silent", bytes(wasmtime.wat2wasm(SILENT_WAT))).status == 201
    t0 = time.monotonic()
    r = node.send(
        {"performative": "inform", "sender": CALLER, "receiver": "silent", "content": None},
        wait="1s",
    )
    assert r.status == 504, r.raw
    # DESIGN.md lists no error code for 504; only the error envelope is checked.
    assert isinstance(r.body, dict), r.raw
    assert {"code", "message", "details"} <= set(r.body["error"]), r.body
    assert time.monotonic() - t0 < 10


def test_made_up_caller_name_gets_the_reply(node: Node, greeter_wasm: bytes) -> None:
    """No sender: the API makes one up, and the agent's reply to it comes back."""
    assert node.deploy_json("greeter", greeter_wasm).status == 201
    r = node.send({"performative": "request", "receiver": "greeter", "content": {}})
    assert r.status == 200, r.raw
    reply = _reply_of(r.body)
    made_up = reply["receiver"]
    assert isinstance(made_up, str)
    assert made_up
    assert reply["content"]["greeting"] == f"hello, {made_up}"
    assert reply["sender"] == "greeter"
    assert "in_reply_to" not in reply or reply["in_reply_to"] is None
    # no conversation_id given: one is made up, and the conversation is queryable
    assert reply["conversation_id"]
    conv = node.request("GET", f"/api/v1/conversations/{reply['conversation_id']}")
    assert conv.status == 200, conv.raw
    assert [m["sender"] for m in _messages_of(conv.body)] == [made_up, "greeter"]


def test_greeter_counts_and_total_survives_restart(
    tmp_path: Path, greeter_wasm: bytes, record_property: Any
) -> None:
    n = Node(config=tmp_path / "caxton.toml", workdir=tmp_path)
    try:
        n.start()
        assert n.deploy_json("greeter", greeter_wasm).status == 201
        for i in (1, 2, 3):
            conv = f"greet-{i}-{uuid.uuid4()}"
            r = n.send(
                {
                    "performative": "request",
                    "sender": CALLER,
                    "receiver": "greeter",
                    "content": {"n": i},
                    "conversation_id": conv,
                    "reply_with": f"q{i}",
                }
            )
            assert r.status == 200, r.raw
            reply = _reply_of(r.body)
            assert reply["sender"] == "greeter"
            assert reply["receiver"] in (CALLER, [CALLER])
            assert reply["performative"] == "inform"
            assert reply["conversation_id"] == conv
            assert reply["in_reply_to"] == f"q{i}"
            content = reply["content"]
            assert content["greeting"] == f"hello, {CALLER}"
            assert content["count"] == i
            assert content["total"] == i
            assert content["init"] == 1, "caxton_init ran before the first message"

        log_has_line = "greeter: message 1 (total 1)" in n.log()
        record_property("agent_log_in_node_output", log_has_line)

        assert n.stop() == 0, n.log()

        n.start()
        shown = n.request("GET", "/api/v1/agents/greeter")
        assert shown.status == 200, "a deployed agent survives a restart"
        r = n.send(
            {
                "performative": "request",
                "sender": CALLER,
                "receiver": "greeter",
                "reply_with": "after-restart",
            }
        )
        assert r.status == 200, r.raw
        reply = _reply_of(r.body)
        assert reply["in_reply_to"] == "after-restart"
        content = reply["content"]
        assert content["total"] == 4, "kv_set is durable across a node restart"
        # DESIGN.md is silent about linear memory across a restart; a fresh instance
        # (count starts again at 1) is what a user would expect. Record what happened.
        record_property("count_after_restart", content["count"])
        print(f"\ncount after restart: {content['count']} (total {content['total']})")
        assert content["count"] in (1, 4)
        assert n.stop() == 0, n.log()
    finally:
        n.kill()


def test_host_import_return_codes(node: Node, probe_wasm: bytes) -> None:
    """kv_get/kv_set/kv_delete/send return codes as the table in section 2 states them."""
    assert node.deploy_json("probe", probe_wasm).status == 201
    r = node.send(
        {"performative": "request", "sender": CALLER, "receiver": "probe", "content": CALLER}
    )
    assert r.status == 200, r.raw
    reply = _reply_of(r.body)
    assert reply["sender"] == "probe", "the host sets sender, whatever the guest wrote"
    got = reply["content"]
    print(f"\nprobe codes: {got}")
    assert got["get_absent"] == -1
    assert got["del_absent"] == -1
    assert got["set"] == 0
    assert got["get_small"] == 6, "kv_get returns the full length even if it does not fit"
    assert got["small_untouched"] == 1, "kv_get copies nothing when the value exceeds vcap"
    assert got["get_big"] == 6
    assert got["same"] == 1
    assert got["set_empty"] == 0
    assert got["get_empty"] == 0, "an empty value is present (0), not absent (-1)"
    assert got["del"] == 0
    assert got["get_after_del"] == -1
    assert got["send_garbage"] == -1, "send of non-JSON is -1 malformed"
    assert got["send_bad_perf"] == -1, "an unknown performative is malformed"
    # An unknown receiver is accepted by send and dead-lettered (section 3).
    assert got["send_unknown"] == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        dl = node.request("GET", "/api/v1/dead-letters")
        if dl.status == 200 and "nobody-here" in dl.raw.decode():
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the message to an unknown receiver is not in the dead letters")


def test_send_without_performative_is_malformed(node: Node, probe_wasm: bytes) -> None:
    assert node.deploy_json("probe", probe_wasm).status == 201
    r = node.send(
        {"performative": "request", "sender": CALLER, "receiver": "probe", "content": CALLER}
    )
    assert r.status == 200, r.raw
    assert _reply_of(r.body)["content"]["send_no_perf"] == -1


def test_trap_fails_the_message_with_a_failure_reply(node: Node) -> None:
    import wasmtime

    assert node.deploy_json("trapper", bytes(wasmtime.wat2wasm(TRAP_WAT))).status == 201
    r = node.send(
        {
            "performative": "request",
            "sender": CALLER,
            "receiver": "trapper",
            "reply_with": "will-trap",
        }
    )
    assert r.status == 200, r.raw
    reply = _reply_of(r.body)
    assert reply["performative"] == "failure"
    assert reply["sender"] == "trapper"
    assert reply["in_reply_to"] == "will-trap"
    assert node.request("GET", "/health").status == 200
    # the agent restarts with a fresh instance and takes the next message
    r = node.send(
        {"performative": "request", "sender": CALLER, "receiver": "trapper", "reply_with": "2"}
    )
    assert r.status == 200, r.raw
    assert _reply_of(r.body)["performative"] == "failure"
    dl = node.request("GET", "/api/v1/dead-letters")
    assert dl.status == 200, dl.raw
    assert "trapper" in dl.raw.decode(), "a failed message is dead-lettered"
