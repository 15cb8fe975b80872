"""Tracing in a real node process, against the real OTLP receiver (gRPC and HTTP): spans arrive
with the node's resource, the Jaeger URL is warned about once, and a hung collector neither
slows message handling nor holds the stop, while the dropped spans are counted on /metrics."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from caxton._version import __version__
from tests.nodeproc import NodeProcess, write_config
from tests.otlp_receiver import OtlpReceiver, otlp_receiver_fixture  # noqa: F401
from tests.support import EXAMPLES, tool, wait_until

pytestmark = pytest.mark.slow

NODE_NAME = "trace-node-1"
#: Messages of the burst: far more than the queue of the hung node holds.
BURST = 200


def node_config(directory: Path, observability: str) -> Path:
    """A node config whose ``[observability]`` also has `observability` (tracing keys)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = write_config(
        directory,
        networking='drain_delay = "20ms"',
        coordination=f'node_name = "{NODE_NAME}"',
        log_level="info",
    )
    path.write_text(
        path.read_text().replace('log_format = "json"\n', f'log_format = "json"\n{observability}')
    )
    return path


def tracing_keys(endpoint: str, **more: str) -> str:
    keys = {"enable_tracing": "true", "trace_sample_rate": "1.0", "otlp_endpoint": f'"{endpoint}"'}
    return "".join(f"{key} = {value}\n" for key, value in {**keys, **more}.items())


def endpoint_of(receiver: OtlpReceiver, protocol: str) -> str:
    return receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint


def metric(node: NodeProcess, name: str) -> float | None:
    status, body = node.get("metrics", "/metrics")
    assert status == 200
    found = re.search(rf"^{name} (\S+)$", body.decode(), re.MULTILINE)
    return None if found is None else float(found.group(1))


def log_messages(directory: Path) -> list[dict[str, object]]:
    lines = (directory / "logs" / "caxton.log").read_text().splitlines()
    return [json.loads(line) for line in lines]


def deploy_echo(node: NodeProcess) -> None:
    request = urllib.request.Request(
        node.url("api", "/api/v1/agents?name=echo"),
        data=(EXAMPLES / "echo.wasm").read_bytes(),
        headers={"Content-Type": "application/wasm"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 201


def burst(node: NodeProcess, count: int = BURST) -> float:
    """Send `count` requests to echo, each waiting for the reply; the seconds it took."""
    url = node.url("api", "/api/v1/messages?wait=5s")
    started = time.monotonic()
    for n in range(count):
        body = json.dumps({"receiver": "echo", "performative": "request", "content": n}).encode()
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
            assert json.loads(answer.read())["content"] == n
    return time.monotonic() - started


@pytest.fixture
def untraced(tmp_path: Path) -> Iterator[NodeProcess]:
    with NodeProcess(node_config(tmp_path / "untraced", "")).start() as node:
        deploy_echo(node)
        yield node


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_api_request_becomes_a_span_with_the_nodes_resource(
    tmp_path: Path, otlp_receiver: OtlpReceiver, protocol: str
) -> None:
    config = node_config(tmp_path, tracing_keys(endpoint_of(otlp_receiver, protocol)))
    with NodeProcess(config).start() as node:
        assert node.get("api", "/api/v1/agents")[0] == 200

        [span] = otlp_receiver.wait_for(lambda s: s.name == "GET /api/v1/agents", timeout=15)
        assert span.protocol == protocol
        assert span.kind == "server"
        assert span.attributes["http.response.status_code"] == 200
        assert span.resource["service.name"] == "caxton"
        assert span.resource["service.version"] == __version__
        assert span.resource["service.instance.id"] == NODE_NAME
        exported = wait_until(
            lambda: metric(node, "caxton_trace_spans_exported_total"), 10, what="exported count"
        )
        assert exported >= 1
        assert metric(node, "caxton_trace_spans_dropped_total") == 0
        assert metric(node, "caxton_trace_span_queue_capacity") == 2048
        scrape = node.get("metrics", "/metrics")[1]
        lint = subprocess.run(
            [tool("promtool", "prometheus"), "check", "metrics"],
            input=scrape,
            capture_output=True,
            timeout=30,
        )
        assert (lint.returncode, lint.stdout, lint.stderr) == (0, b"", b"")
        assert node.stop()[0] == 0
    messages = [m["message"] for m in log_messages(tmp_path)]
    assert any(str(m).startswith("tracing: exporting spans OTLP/") for m in messages)


def test_the_seeds_jaeger_url_is_warned_about_once(tmp_path: Path) -> None:
    keys = tracing_keys("http://jaeger-collector:14268/api/traces")
    with NodeProcess(node_config(tmp_path, keys)).start() as node:
        for _ in range(3):
            assert node.get("api", "/api/v1/agents")[0] == 200
        assert metric(node, "caxton_trace_spans_dropped_total") is None  # tracing is off
        assert node.stop()[0] == 0

    warnings = [m for m in log_messages(tmp_path) if "Jaeger" in str(m["message"])]
    assert len(warnings) == 1, warnings
    [warning] = warnings
    assert warning["level"] == "warning"
    assert "does not accept OTLP; no spans are exported" in str(warning["message"])
    assert "http://jaeger-collector:4318/v1/traces" in str(warning["message"])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_hung_collector_does_not_slow_messages_and_drops_are_counted(
    tmp_path: Path, otlp_receiver: OtlpReceiver, untraced: NodeProcess, protocol: str
) -> None:
    otlp_receiver.set_mode("hang")
    keys = tracing_keys(
        endpoint_of(otlp_receiver, protocol), otlp_timeout='"1s"', otlp_max_queue_size="16"
    )
    with NodeProcess(node_config(tmp_path / "traced", keys)).start() as node:
        deploy_echo(node)
        baseline = burst(untraced)
        took = burst(node)
        burst_end = time.monotonic()

        # Exporting synchronously would cost otlp_timeout (1 s) per span: 200 s.
        assert took < 3 * baseline + 3.0, f"{took:.2f}s traced vs {baseline:.2f}s untraced"
        dropped = metric(node, "caxton_trace_spans_dropped_total")
        assert dropped is not None
        assert dropped >= BURST / 2
        assert metric(node, "caxton_trace_span_queue_capacity") == 16
        # otlp_timeout (1 s, not the default 10 s) ends each hung export attempt.
        wait_until(
            lambda: (metric(node, "caxton_trace_spans_export_failed_total") or 0) > 0,
            5,
            what="an export to the hung collector failed after otlp_timeout",
        )
        assert time.monotonic() - burst_end < 5.0
        assert metric(node, "caxton_trace_spans_exported_total") == 0
        assert otlp_receiver.requests[protocol] >= 1
        assert otlp_receiver.spans() == []

        started = time.monotonic()
        code, stderr = node.stop(signal.SIGTERM)
        took_to_stop = time.monotonic() - started
    assert code == 0, stderr
    assert took_to_stop < 1.5, f"exit took {took_to_stop:.2f}s after SIGTERM"
    messages = [str(m["message"]) for m in log_messages(tmp_path / "traced")]
    assert "caxton stopped" in messages
    assert not any("shutdown took longer" in m for m in messages)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_spans_flow_again_when_a_down_collector_comes_back(
    tmp_path: Path, otlp_receiver: OtlpReceiver, protocol: str
) -> None:
    otlp_receiver.set_mode("refuse")
    keys = tracing_keys(endpoint_of(otlp_receiver, protocol), otlp_timeout='"1s"')
    with NodeProcess(node_config(tmp_path, keys)).start() as node:
        assert node.get("api", "/api/v1/agents")[0] == 200
        wait_until(
            lambda: (metric(node, "caxton_trace_spans_export_failed_total") or 0) > 0,
            15,
            what="an export to the down collector failed",
        )

        otlp_receiver.set_mode("ok")
        assert node.get("api", "/health")[0] == 200

        [span] = otlp_receiver.wait_for(lambda s: s.name == "GET /health", timeout=30)
        assert span.resource["service.instance.id"] == NODE_NAME
        wait_until(  # counted once the exporter has the receiver's answer
            lambda: (metric(node, "caxton_trace_spans_exported_total") or 0) >= 1,
            10,
            what="the exported span was counted",
        )
        assert node.stop()[0] == 0
