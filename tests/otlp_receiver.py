"""A real OTLP trace receiver for tests: OTLP/HTTP and OTLP/gRPC on 127.0.0.1.

Use the ``otlp_receiver`` fixture (import it into the test module, or into a ``conftest.py``)::

    from tests.otlp_receiver import OtlpReceiver, otlp_receiver_fixture  # noqa: F401

    def test_x(otlp_receiver: OtlpReceiver) -> None:
        config = f'otlp_endpoint = "{otlp_receiver.http_endpoint}"'   # or .grpc_endpoint
        ...
        [span] = otlp_receiver.wait_for(lambda s: s.name == "POST /api/v1/messages")
        assert span.resource["service.name"] == "caxton"

or ``with OtlpReceiver() as receiver:`` outside pytest. Both listeners start at once and are
stopped (and every hung request released) when the fixture ends: nothing is left running.

Endpoints (what to put in ``otlp_endpoint``):

* `OtlpReceiver.http_endpoint`: ``http://127.0.0.1:PORT/v1/traces`` (``POST``, protobuf,
  ``Content-Encoding: gzip`` understood); `OtlpReceiver.http_base` is the same without a path.
* `OtlpReceiver.grpc_endpoint`: ``grpc://127.0.0.1:PORT`` (``TraceService/Export``, insecure);
  `OtlpReceiver.grpc_address` is ``127.0.0.1:PORT``.
* `OtlpReceiver.refused_endpoint`: ``http://127.0.0.1:PORT/v1/traces`` on a port that is
  bound but not listening, so every connection is refused (the port stays reserved).

Behaviour, for both protocols at once (`OtlpReceiver.mode`, changeable at any time):

* ``"ok"``: decode and record the spans, answer success;
* ``"hang"``: accept the request and never answer (until the mode changes or the receiver
  stops); the request is counted but its spans are not recorded;
* ``"unavailable"``: answer HTTP 503 / gRPC ``UNAVAILABLE`` (the exporters retry these);
* ``"refuse"``: both listeners are closed, so connections are refused (a collector that is
  down); a later ``set_mode("ok")`` listens again on the same ports (it came back).

What was received:

* `spans()`: every `ReceivedSpan` so far, in arrival order; `traces()`: them grouped by trace id;
* `wait_for(predicate, timeout, count=1)`: block until `count` spans match (returns them) or fail
  the test with what did arrive;
* `requests`: export requests seen per protocol (``{"http": n, "grpc": n}``), hung and refused
  ones included (not the refused port's); `http_connections`: HTTP connections accepted;
  `clear()` forgets spans and counts.

A `ReceivedSpan` has hex ``trace_id`` / ``span_id`` / ``parent_span_id`` (``None`` for a root),
``name``, ``kind`` (``"server"``, ``"client"``, ``"internal"``, ``"producer"``, ``"consumer"``),
``attributes``, ``events`` (`ReceivedEvent`: name, attributes, time), ``status`` (``"unset"``,
``"ok"``, ``"error"``) and ``status_message``, ``resource`` (``service.name``,
``service.version``, ``service.instance.id``, ...), ``scope`` (the tracer's name), start/end
times in ns and the ``protocol`` it came by.
"""

from __future__ import annotations

import gzip
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = ["OtlpReceiver", "ReceivedEvent", "ReceivedSpan", "otlp_receiver_fixture"]

Mode = Literal["ok", "hang", "unavailable", "refuse"]
Protocol = Literal["http", "grpc"]

_KINDS = {
    trace_pb2.Span.SPAN_KIND_UNSPECIFIED: "unspecified",
    trace_pb2.Span.SPAN_KIND_INTERNAL: "internal",
    trace_pb2.Span.SPAN_KIND_SERVER: "server",
    trace_pb2.Span.SPAN_KIND_CLIENT: "client",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "producer",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "consumer",
}
_STATUS = {
    trace_pb2.Status.STATUS_CODE_UNSET: "unset",
    trace_pb2.Status.STATUS_CODE_OK: "ok",
    trace_pb2.Status.STATUS_CODE_ERROR: "error",
}


@dataclass(frozen=True)
class ReceivedEvent:
    """A span event (``span.add_event``)."""

    name: str
    attributes: dict[str, Any]
    time_ns: int


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver decoded it (see the module docstring)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    attributes: dict[str, Any]
    events: tuple[ReceivedEvent, ...]
    status: str
    status_message: str
    resource: dict[str, Any]
    scope: str
    start_ns: int
    end_ns: int
    protocol: Protocol


def _value(value: common_pb2.AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, which)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def decode(
    request: trace_service_pb2.ExportTraceServiceRequest, protocol: Protocol
) -> list[ReceivedSpan]:
    """The spans of one export request."""
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        kind=_KINDS.get(span.kind, str(span.kind)),
                        attributes=_attributes(span.attributes),
                        events=tuple(
                            ReceivedEvent(e.name, _attributes(e.attributes), e.time_unix_nano)
                            for e in span.events
                        ),
                        status=_STATUS.get(span.status.code, str(span.status.code)),
                        status_message=span.status.message,
                        resource=resource,
                        scope=scope_spans.scope.name,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        protocol=protocol,
                    )
                )
    return spans


@dataclass(eq=False)
class OtlpReceiver:
    """OTLP/HTTP and OTLP/gRPC trace endpoints on loopback (see the module docstring)."""

    mode: Mode = "ok"
    requests: dict[str, int] = field(default_factory=lambda: {"http": 0, "grpc": 0})
    #: HTTP connections accepted (an exporter that keeps its connection alive opens one).
    http_connections: int = 0
    _spans: list[ReceivedSpan] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _http: ThreadingHTTPServer | None = None
    _http_port: int = 0
    _http_thread: threading.Thread | None = None
    _grpc: grpc.Server | None = None
    _grpc_port: int = 0
    _refusing: socket.socket | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> OtlpReceiver:
        """Bind both listeners and the refusing port; returns self."""
        self._listen()
        self._refusing = socket.socket()
        self._refusing.bind(("127.0.0.1", 0))  # bound, never listening: connections refused
        return self

    def close(self) -> None:
        """Release hung requests and stop both listeners. Idempotent."""
        self._stopped.set()
        with self._changed:
            self._changed.notify_all()
        self._unlisten()
        if self._refusing is not None:
            self._refusing.close()
            self._refusing = None

    def _listen(self) -> None:
        """Start both listeners, on the ports they had before if they had any."""
        self._http = _QuietHTTPServer(("127.0.0.1", self._http_port), _http_handler(self))
        self._http.daemon_threads = True
        self._http_port = self._http.server_address[1]
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, args=(0.05,), name="otlp-receiver-http", daemon=True
        )
        self._http_thread.start()
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _Servicer(self), self._grpc
        )
        self._grpc_port = self._grpc.add_insecure_port(f"127.0.0.1:{self._grpc_port}")
        self._grpc.start()

    def _unlisten(self) -> None:
        """Stop both listeners: their ports refuse connections from now on."""
        if self._grpc is not None:
            self._grpc.stop(grace=0).wait(5)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(5)
            self._http_thread = None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- endpoints -------------------------------------------------------------------------

    @property
    def http_base(self) -> str:
        assert self._http_port, "the receiver is not started"
        return f"http://127.0.0.1:{self._http_port}"

    @property
    def http_endpoint(self) -> str:
        return self.http_base + "/v1/traces"

    @property
    def grpc_address(self) -> str:
        assert self._grpc_port, "the receiver is not started"
        return f"127.0.0.1:{self._grpc_port}"

    @property
    def grpc_endpoint(self) -> str:
        return "grpc://" + self.grpc_address

    @property
    def refused_endpoint(self) -> str:
        assert self._refusing is not None, "the receiver is not started"
        return f"http://127.0.0.1:{self._refusing.getsockname()[1]}/v1/traces"

    # -- behaviour and results -------------------------------------------------------------

    def set_mode(self, mode: Mode) -> None:
        """Change how requests are answered from now on (releases hung ones if not "hang").

        ``"refuse"`` stops both listeners (their ports refuse connections, hung requests are
        dropped unanswered); another mode after it listens again on the same ports.
        """
        with self._changed:
            before, self.mode = self.mode, mode
            self._changed.notify_all()
        if mode == "refuse" and before != "refuse":
            self._unlisten()
        elif before == "refuse" and mode != "refuse":
            self._listen()

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, in arrival order."""
        with self._changed:
            return list(self._spans)

    def traces(self) -> dict[str, list[ReceivedSpan]]:
        """The spans received so far, grouped by trace id (in arrival order)."""
        grouped: dict[str, list[ReceivedSpan]] = {}
        for span in self.spans():
            grouped.setdefault(span.trace_id, []).append(span)
        return grouped

    def wait_for(
        self,
        predicate: Callable[[ReceivedSpan], bool] = lambda _: True,
        timeout: float = 10.0,
        *,
        count: int = 1,
    ) -> list[ReceivedSpan]:
        """Wait until at least `count` received spans satisfy `predicate`; return them all.

        Fails the test (``pytest.fail``) after `timeout` seconds, listing what did arrive.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matching = [s for s in self._spans if predicate(s)]
                if len(matching) >= count:
                    return matching
                left = deadline - time.monotonic()
                if left <= 0:
                    names = sorted({s.name for s in self._spans})
                    pytest.fail(
                        f"{len(matching)} of {count} expected spans arrived within {timeout}s; "
                        f"received {len(self._spans)} spans named {names}, requests "
                        f"{self.requests}"
                    )
                self._changed.wait(min(left, 0.1))

    def clear(self) -> None:
        """Forget the spans and request counts received so far."""
        with self._changed:
            self._spans.clear()
            self.requests.update(http=0, grpc=0)
            self.http_connections = 0

    # -- used by the listeners -------------------------------------------------------------

    def _receive(self, protocol: Protocol) -> Mode:
        """Count a request and wait while hanging; the mode to answer with ("refuse": drop it
        unanswered, when the receiver stops or refuses)."""
        with self._changed:
            self.requests[protocol] += 1
            while self.mode == "hang" and not self._stopped.is_set():
                self._changed.wait(0.1)
            return "refuse" if self._stopped.is_set() else self.mode

    def _record(self, spans: list[ReceivedSpan]) -> None:
        with self._changed:
            self._spans.extend(spans)
            self._changed.notify_all()


class _QuietHTTPServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up on a hung request has closed its end: not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _http_handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            with receiver._changed:
                receiver.http_connections += 1
            super().setup()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != "/v1/traces":
                self._answer(404, b"not an OTLP traces path")
                return
            mode = receiver._receive("http")
            if mode == "refuse":  # stopped or refusing: drop the connection unanswered
                self.close_connection = True
                return
            if mode == "unavailable":
                self._answer(503, b"unavailable")
                return
            if self.headers.get("Content-Encoding", "") == "gzip":
                body = gzip.decompress(body)
            if self.headers.get("Content-Type", "") != "application/x-protobuf":
                self._answer(415, b"only application/x-protobuf")
                return
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            receiver._record(decode(request, "http"))
            self._answer(200, trace_service_pb2.ExportTraceServiceResponse().SerializeToString())

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class _Servicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        mode = self.receiver._receive("grpc")
        if mode == "refuse":
            context.abort(grpc.StatusCode.CANCELLED, "receiver stopped")
        if mode == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "unavailable")
        self.receiver._record(decode(request, "grpc"))
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture(name="otlp_receiver")
def otlp_receiver_fixture() -> Iterator[OtlpReceiver]:
    """A started `OtlpReceiver`, stopped (hung requests released) after the test."""
    with OtlpReceiver() as receiver:
        yield receiver
