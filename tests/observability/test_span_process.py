"""The child process that builds and exports the spans of traced messages, against a real
OTLP receiver: what it is given arrives, its counts come back, and it never outlives a stop."""

from __future__ import annotations

import os
import time

from caxton.config import ObservabilityConfig
from caxton.observability._span_export import SpanCounts
from caxton.observability.span_process import NICENESS, SpanExportProcess
from caxton.runtime.tracing import SpanLog
from tests.otlp_receiver import OtlpReceiver, otlp_receiver_fixture  # noqa: F401

TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"
MESSAGE = (
    b'{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",'
    b'"sender":"ping","message_id":"m-1","created_at":"2026-12-04T03:13:48.123Z",'
    b'"conversation_id":"c-1","receiver":"pong","performative":"request","content":1}'
)


def handled(log: SpanLog, span_id: int) -> None:
    now = time.time_ns()
    sent = MESSAGE.replace(b'"m-1"', b'"m-2"')
    send = (span_id + 1, now, sent)
    log.add(("handle", span_id, now, now + 1000, "pong", 3, MESSAGE, "ok", None, *send))


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone too (its parent, this process, reaps it in join).
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().split()[2] == "Z"


def test_spans_built_in_the_child_reach_the_collector(otlp_receiver: OtlpReceiver) -> None:
    log = SpanLog()
    counts = SpanCounts()
    config = ObservabilityConfig(
        enable_tracing=True, otlp_endpoint=otlp_receiver.grpc_endpoint, otlp_timeout=5.0
    )
    process = SpanExportProcess(log, config, node_id="node-7", counts=counts)
    process.start()
    try:
        handled(log, 0x1000)
        [handle] = otlp_receiver.wait_for(lambda s: s.name == "caxton.handle", timeout=20)
        assert handle.trace_id == TRACE.decode()
        assert handle.span_id == "0000000000001000"
        assert handle.parent_span_id == "00f067aa0ba902b7"
        assert handle.attributes["caxton.agent.name"] == "pong"
        assert handle.attributes["caxton.agent.version"] == 3
        assert handle.resource["service.instance.id"] == "node-7"
        [send] = otlp_receiver.wait_for(lambda s: s.name == "caxton.send")
        assert send.parent_span_id == handle.span_id
        assert send.attributes["messaging.message.id"] == "m-2"
        for k in range(50):  # more, and they are counted as exported in the node
            handled(log, 0x2000 + 2 * k)
        assert process.flush(20)
        assert counts.exported == 2 + 100
        pid = process.pid
        assert pid is not None
    finally:
        process.close(timeout=10)
    assert counts.exported == 2 + 100
    assert counts.dropped == 0
    assert len(otlp_receiver.spans()) == 102
    assert gone(pid)


def test_a_stop_does_not_wait_for_a_hung_collector(otlp_receiver: OtlpReceiver) -> None:
    otlp_receiver.set_mode("hang")
    log = SpanLog()
    config = ObservabilityConfig(
        enable_tracing=True, otlp_endpoint=otlp_receiver.http_endpoint, otlp_timeout=30.0
    )
    process = SpanExportProcess(log, config, counts=SpanCounts())
    process.start()
    handled(log, 0x3000)
    time.sleep(0.5)
    pid = process.pid
    assert pid is not None
    started = time.monotonic()
    process.close(timeout=0.5)
    assert time.monotonic() - started < 5
    assert gone(pid)


def niceness(pid: int) -> int:
    """The nice value of process ``pid`` (field 19 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[16])


def test_the_child_yields_the_cpu_to_the_node(otlp_receiver: OtlpReceiver) -> None:
    """Building and exporting spans runs below the node's CPU priority, so that on a busy
    machine it waits for an idle core instead of slowing the agents."""
    log = SpanLog()
    config = ObservabilityConfig(enable_tracing=True, otlp_endpoint=otlp_receiver.grpc_endpoint)
    process = SpanExportProcess(log, config, counts=SpanCounts())
    process.start()
    try:
        handled(log, 0x3000)  # it works at that priority
        otlp_receiver.wait_for(lambda s: s.name == "caxton.handle", timeout=20)
        pid = process.pid
        assert pid is not None
        assert niceness(pid) == min(19, niceness(os.getpid()) + NICENESS)
    finally:
        process.close(timeout=10)
