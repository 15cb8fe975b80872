"""A node with tracing on exports a span per API request over OTLP/HTTP."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from tests.nodeproc import NodeProcess, write_config

pytestmark = pytest.mark.slow


class _Sink(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append((self.path, self.headers.get("Content-Type", ""), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_api_requests_become_spans(tmp_path: Path) -> None:
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=sink.serve_forever, daemon=True)
    thread.start()
    try:
        extra = (
            "enable_tracing = true\ntrace_sample_rate = 1.0\n"
            f'otlp_endpoint = "http://127.0.0.1:{sink.server_address[1]}"\n'
        )
        cfg = write_config(tmp_path)
        cfg.write_text(
            cfg.read_text().replace('log_format = "json"\n', f'log_format = "json"\n{extra}')
        )
        with NodeProcess(cfg).start() as node:
            assert node.get("api", "/health")[0] == 200
            assert node.stop()[0] == 0
    finally:
        sink.shutdown()
    assert _Sink.received, "no spans were exported"
    path, content_type, _ = _Sink.received[0]
    assert path == "/v1/traces"
    assert content_type == "application/x-protobuf"
    assert b"GET /health" in b"".join(r[2] for r in _Sink.received)


class _Down(http.server.BaseHTTPRequestHandler):
    """A collector that is there but failing: 503, which the exporter retries."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("collector", ["failing", "closed port", "hung"])
def test_sigterm_does_not_wait_for_a_dead_collector(tmp_path: Path, collector: str) -> None:
    """The exporter's retry backoff used to hold a stopped node for seconds after its drain;
    a collector that accepts connections but never answers held it for otlp_timeout (10 s)."""
    import json
    import signal
    import socket
    import time

    down = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Down)
    thread = threading.Thread(target=down.serve_forever, daemon=True)
    thread.start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # the kernel completes connections; nothing ever reads or answers
    port = {
        "failing": down.server_address[1],
        "closed port": closed.getsockname()[1],
        "hung": hung.getsockname()[1],
    }[collector]
    try:
        extra = f'enable_tracing = true\ntrace_sample_rate = 1.0\notlp_endpoint = "http://127.0.0.1:{port}"\n'
        cfg = write_config(tmp_path, networking='drain_delay = "20ms"')
        cfg.write_text(
            cfg.read_text().replace('log_format = "json"\n', f'log_format = "json"\n{extra}')
        )
        with NodeProcess(cfg).start() as node:
            for _ in range(5):
                assert node.get("api", "/api/v1/agents")[0] == 200  # spans to export
            started = time.monotonic()
            code, stderr = node.stop(signal.SIGTERM)
            took = time.monotonic() - started
            assert code == 0, stderr
    finally:
        down.shutdown()
        closed.close()
        hung.close()
    assert took < 1.0, f"exit took {took:.2f}s after SIGTERM"
    log = (tmp_path / "logs" / "caxton.log").read_text().splitlines()
    messages = [json.loads(line)["message"] for line in log]
    assert "caxton stopped" in messages
    assert not any("shutdown took longer" in m for m in messages)
