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
