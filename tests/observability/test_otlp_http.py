"""OTLP/HTTP export to a plain ``http://`` collector: one kept-alive connection, direct.

`DirectSession` replaces the requests machinery per export (see its module); the exporter's
retries and errors must not notice: real receivers on loopback, real sockets.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from caxton.observability import configure_tracing
from caxton.observability._otlp_http import DirectSession
from caxton.observability._span_export import _http_session
from tests.otlp_receiver import OtlpReceiver, otlp_receiver_fixture  # noqa: F401

from .test_otlp_export import samples, tracing_config


def test_exports_share_one_kept_alive_connection(otlp_receiver: OtlpReceiver) -> None:
    tracing = configure_tracing(tracing_config(otlp_receiver.http_endpoint))
    for n in range(3):
        with tracing.tracer.start_as_current_span(f"export-{n}"):
            pass
        assert tracing.force_flush()  # one export request each
    otlp_receiver.wait_for(count=3)
    assert otlp_receiver.requests["http"] == 3
    assert otlp_receiver.http_connections == 1
    assert samples(tracing)["trace_spans_exported"] == 3
    assert tracing.shutdown()


def _closing_server() -> tuple[socket.socket, list[int], list[bytes]]:
    """A server that answers each connection's first request (200, keep-alive as far as the
    client can tell) and then closes it, as a collector's idle timeout does; the lengths of
    the bodies it answered, and the request heads."""
    server = socket.create_server(("127.0.0.1", 0))
    answered: list[int] = []
    heads: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += connection.recv(65536)
                headers, _, body = head.partition(b"\r\n\r\n")
                length = int(headers.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += connection.recv(65536)
                answered.append(len(body))  # (before the answer: the client may be done then)
                heads.append(headers.lower())
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    threading.Thread(target=serve, daemon=True).start()
    return server, answered, heads


@pytest.fixture
def closing_server() -> Iterator[tuple[str, list[int], list[bytes]]]:
    server, answered, heads = _closing_server()
    with server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/v1/traces", answered, heads


def test_a_connection_the_collector_closed_meanwhile_is_replaced(
    closing_server: tuple[str, list[int], list[bytes]],
) -> None:
    endpoint, answered, heads = closing_server
    session = DirectSession(endpoint)
    for body in (b"first", b"second", b"third"):
        response = session.post(endpoint, data=body, timeout=5)
        assert (response.status_code, response.content, response.ok) == (200, b"ok", True)
    assert answered == [5, 6, 5]  # each request reached it once
    assert session.connections_opened == 3
    # its answer is read as sent: nothing asks for a compressed one this session would not undo
    assert all(b"accept-encoding: identity" in head for head in heads)
    session.close()


def test_an_unreachable_collector_is_a_connection_error(otlp_receiver: OtlpReceiver) -> None:
    session = DirectSession(otlp_receiver.refused_endpoint)
    with pytest.raises(requests.exceptions.ConnectionError):
        session.post(otlp_receiver.refused_endpoint, data=b"x", timeout=5)
    assert session.requests_sent == 0


def test_a_hung_collector_is_a_read_timeout(otlp_receiver: OtlpReceiver) -> None:
    otlp_receiver.set_mode("hang")
    session = DirectSession(otlp_receiver.http_endpoint)
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.post(otlp_receiver.http_endpoint, data=b"x", timeout=0.3)
    otlp_receiver.set_mode("ok")
    session.close()


def test_a_refusal_comes_back_as_the_collector_s_response(otlp_receiver: OtlpReceiver) -> None:
    otlp_receiver.set_mode("unavailable")
    session = DirectSession(otlp_receiver.http_endpoint)
    response = session.post(otlp_receiver.http_endpoint, data=b"x", timeout=5)
    assert (response.status_code, response.reason, response.ok) == (
        503,
        "Service Unavailable",
        False,
    )
    assert response.headers["content-type"] == "application/x-protobuf"  # any case
    assert response.text == "unavailable"
    session.close()


def test_other_requests_go_the_requests_way(otlp_receiver: OtlpReceiver) -> None:
    session = DirectSession(otlp_receiver.http_endpoint)
    response = session.get(otlp_receiver.http_endpoint, timeout=5)
    assert response.status_code == 501  # the receiver has no GET
    assert session.requests_sent == 0
    session.close()


def test_a_proxy_of_the_environment_keeps_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = "http://collector.example:4318/v1/traces"
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxied = _http_session(endpoint)
    assert not isinstance(proxied, DirectSession)
    assert proxied.proxies["http"] == "http://127.0.0.1:3128"
    monkeypatch.setenv("NO_PROXY", "collector.example")
    assert isinstance(_http_session(endpoint), DirectSession)
    assert _http_session("https://collector.example:4318/v1/traces") is None  # the SDK's own


def test_only_a_plain_http_endpoint_is_direct() -> None:
    with pytest.raises(ValueError, match="not a plain http endpoint"):
        DirectSession("https://collector.example:4318/v1/traces")
