"""A wrong ``--server`` is one clear line at once, never a traceback or a long hang.

Against a real HTTP server that is not Caxton (Python's http.server on loopback, answering
404 with an HTML page), a TCP server that does not speak HTTP, and addresses that are not URLs.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from caxton.cli import cli
from tests.nodeproc import NodeProcess, write_config

#: One command of each client group (they share the client, but each must fail the same way).
COMMANDS = [
    ["agent", "list"],
    ["agent", "show", "echo"],
    ["message", "send", "--to", "echo", "-p", "inform"],
    ["conversation", "show", "c1"],
    ["dead-letters", "list"],
    ["debug", "echo"],
]


def run(server: str, args: list[str]) -> Result:
    result = CliRunner().invoke(cli, [*args, "--server", server])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback would reach the user
    return result


def one_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    return lines[0]


class _NotCaxton(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = b"<!DOCTYPE html>\n<html><body><h1>Not Found</h1></body></html>\n"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def not_caxton() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotCaxton)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def not_http() -> Iterator[str]:
    """A TCP server that answers every connection with a line that is not HTTP."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        sock.close()


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_server_that_is_not_caxton(not_caxton: str, args: list[str]) -> None:
    result = run(not_caxton, args)
    assert result.exit_code == 1
    line = one_line(result)
    assert "HTTP 404" in line
    assert "text/html" in line
    assert "not a Caxton API answer" in line
    assert "--server" in line


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_server_that_does_not_speak_http(not_http: str, args: list[str]) -> None:
    result = run(not_http, args)
    assert result.exit_code == 1
    line = one_line(result)
    assert "did not answer in HTTP" in line


@pytest.mark.parametrize(
    ("server", "why"),
    [
        ("not a url", "not a URL"),
        ("ftp://127.0.0.1/", "the scheme must be http:// or https://"),
        ("http://127.0.0.1:99999", "the port is not a number"),
        ("http://", "not a URL"),
    ],
)
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_server_that_is_not_a_url(server: str, why: str, args: list[str]) -> None:
    started = time.monotonic()
    result = run(server, args)
    assert time.monotonic() - started < 2  # at once: nothing is tried
    assert result.exit_code == 2
    line = one_line(result)
    assert why in line
    assert repr(server) in line
    assert "http://127.0.0.1:8080" in line  # an example of what to pass


def test_a_server_that_refuses_connections_is_one_line() -> None:
    with socket.socket() as sock:  # bound, not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = run(f"127.0.0.1:{port}", ["agent", "list"])
    assert result.exit_code == 1
    assert "cannot reach the Caxton server" in one_line(result)


@pytest.fixture(scope="module")
def auth_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    directory = tmp_path_factory.mktemp("auth-node")
    cfg = write_config(directory, '[security]\nauth_enabled = true\njwt_secret = "${JWT_SECRET}"\n')
    with NodeProcess(
        cfg, env={"JWT_SECRET": "a-client-errors-test-secret-0123456789"}
    ).start() as n:
        yield n


@pytest.mark.slow
@pytest.mark.parametrize("listener", ["metrics", "admin"])
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_another_listener_of_a_node_is_named_as_the_wrong_server(
    auth_node: NodeProcess, listener: str, args: list[str]
) -> None:
    """The metrics or admin port answered "no route for GET /api/v1/agents" and no more."""
    result = run(auth_node.url(listener, ""), args)
    assert result.exit_code == 1
    line = one_line(result)
    assert "no route for" in line
    assert "--server" in line
    assert "networking.bind_address" in line


@pytest.mark.slow
def test_a_missing_or_bad_token_says_how_to_pass_one(auth_node: NodeProcess) -> None:
    """The server's 401 speaks of HTTP headers; on the command line it is --token."""
    api = auth_node.url("api", "")
    missing = one_line(run(api, ["agent", "list"]))
    assert "--token TOKEN or CAXTON_TOKEN" in missing
    assert "caxton token create" in missing
    bad = CliRunner().invoke(cli, ["agent", "list", "--server", api, "--token", "garbage"])
    assert bad.exit_code == 1
    line = one_line(bad)
    assert "not valid" in line
    assert "--token or CAXTON_TOKEN" in line
