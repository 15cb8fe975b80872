"""A real node's span export process: it exists only with tracing on, exports the spans of the
node's messages, and never outlives the node, whether the node stops or is killed."""

from __future__ import annotations

import base64
import json
import signal
import urllib.request
from pathlib import Path

import pytest

from tests.nodeproc import NodeProcess, write_config
from tests.otlp_receiver import OtlpReceiver, otlp_receiver_fixture  # noqa: F401
from tests.support import example, wait_until


def children(pid: int) -> list[int]:
    """The node's child processes that run the span export process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == pid and b"spawn_main" in cmdline and stat[0] != "Z":
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return stat[0] != "Z"


def post(node: NodeProcess, path: str, body: object) -> dict[str, object]:
    request = urllib.request.Request(
        node.url("api", path),
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01",
        },
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        answer: dict[str, object] = json.loads(response.read())
        return answer


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_the_span_export_process_lives_and_dies_with_its_node(
    tmp_path: Path, otlp_receiver: OtlpReceiver, how: signal.Signals
) -> None:
    extra = (
        f'\nenable_tracing = true\ntrace_sample_rate = 0.0\notlp_endpoint = "'
        f'{otlp_receiver.http_endpoint}"\n'
    )
    config = write_config(tmp_path, log_level="info")
    config.write_text(config.read_text() + extra)
    with NodeProcess(config) as node:
        node.start()
        assert node.proc is not None
        [child] = children(node.proc.pid)
        wasm = base64.b64encode(example("echo")).decode()
        post(node, "/api/v1/agents", {"name": "echo", "wasm": wasm})
        reply = post(
            node,
            "/api/v1/messages?wait=10s",
            {"receiver": "echo", "performative": "request", "content": "hi"},
        )
        assert reply["content"] == "hi"
        [handle] = otlp_receiver.wait_for(lambda s: s.name == "caxton.handle", timeout=20)
        assert handle.trace_id == "ab" * 16
        if how is signal.SIGTERM:
            code, _ = node.stop(how)
            assert code == 0
        else:
            node.proc.kill()
            node.proc.communicate()
        wait_until(lambda: not alive(child), 15, what="the span export process ended")


def test_without_tracing_there_is_no_span_export_process(tmp_path: Path) -> None:
    with NodeProcess(write_config(tmp_path, log_level="info")) as node:
        node.start()
        assert node.proc is not None
        assert children(node.proc.pid) == []
