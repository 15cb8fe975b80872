"""The span export process's queue of encoded spans: batches the collector gets whole, a bound
that waits and then drops (counted), failures counted, and nothing queued left behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from caxton.observability._otlp_encode import request_bytes, span_bytes, span_field
from caxton.observability._span_batches import SpanBatches
from caxton.observability._span_export import CountingExporter, SpanCounts
from caxton.observability.spans import SCOPE

RESOURCE = Resource.create({"service.name": "caxton", "service.instance.id": "node-1"})


def spans(first: int, n: int) -> list[bytes]:
    return [
        span_field(
            span_bytes(
                0xAB << 64 | 1,
                i,
                7,
                "caxton.handle",
                SpanKind.CONSUMER,
                10,
                20,
                {"caxton.agent.name": "pong", "caxton.n": i},
            )
        )
        for i in range(first, first + n)
    ]


class Collector(SpanExporter):
    """Parses each request as a collector would; can be made to hang or to refuse."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.sizes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.refuse = False
        self.explode = False

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.gate.wait()
        if self.explode:
            raise ConnectionError("collector gone")
        self.sizes.append(len(spans))
        self.requests.append(ExportTraceServiceRequest.FromString(request_bytes(spans)))
        return SpanExportResult.FAILURE if self.refuse else SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def span_ids(self) -> list[int]:
        return [
            int.from_bytes(span.span_id, "big")
            for request in self.requests
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]


def batches_for(collector: Collector, counts: SpanCounts, **kwargs: Any) -> SpanBatches:
    options = {"capacity": 2048, "timeout": 5.0, **kwargs}
    return SpanBatches(CountingExporter(collector, counts), counts, RESOURCE, SCOPE, **options)


def test_every_span_put_reaches_the_collector_in_bounded_batches() -> None:
    collector, counts = Collector(), SpanCounts()
    queue = batches_for(collector, counts, batch=100)
    for at in range(0, 1000, 250):
        queue.put(spans(at, 250))
    assert queue.flush()
    assert sorted(collector.span_ids()) == list(range(1000))
    assert max(collector.sizes) <= 100
    assert (counts.exported, counts.failed, counts.dropped) == (1000, 0, 0)
    [resource] = collector.requests[0].resource_spans
    assert {a.key: a.value.string_value for a in resource.resource.attributes}[
        "service.instance.id"
    ] == "node-1"
    assert [s.scope.name for s in resource.scope_spans] == ["caxton"]
    assert queue.close()


def test_a_batch_stays_within_its_bytes_and_a_larger_span_goes_alone() -> None:
    collector, counts = Collector(), SpanCounts()
    small = spans(0, 40)
    each = len(small[0])
    last = spans(40, 1)[0]
    queue = batches_for(collector, counts, batch=1000, max_bytes=10 * each)
    collector.gate.clear()  # everything is queued before the first batch is taken
    queue.put(small[:1])
    time.sleep(0.05)  # the thread took the first span and waits at the gate
    huge = span_field(
        span_bytes(0xAB << 64 | 1, 99, 7, "caxton.handle", SpanKind.CONSUMER, 10, 20,
                   {"caxton.agent.name": "p" * (20 * each)})
    )  # fmt: skip
    queue.put([*small[1:], last, huge])
    collector.gate.set()
    assert queue.flush()
    assert sorted(collector.span_ids()) == [*range(41), 99]
    assert collector.sizes == [1, 10, 10, 10, 10, 1]  # 10 spans' bytes per request; then alone
    assert (counts.exported, counts.failed, counts.dropped) == (42, 0, 0)
    assert queue.close()


def test_a_full_queue_waits_for_the_collector_then_drops_what_does_not_fit() -> None:
    collector, counts = Collector(), SpanCounts()
    collector.gate.clear()  # hung
    queue = batches_for(collector, counts, capacity=300, timeout=0.3, batch=100)
    queue.put(spans(0, 250))
    deadline = time.monotonic() + 5
    while queue.queued() and len(queue._spans) > 150 and time.monotonic() < deadline:
        time.sleep(0.01)  # the thread took its first batch (and hangs on it)
    started = time.monotonic()
    queue.put(spans(250, 250))  # 150 wait + 250 > 300 - 0 free: waits, then drops 100
    waited = time.monotonic() - started
    assert 0.25 <= waited < 3
    assert counts.dropped == 100
    collector.gate.set()
    assert queue.flush()
    assert counts.exported == 400
    assert counts.exported + counts.dropped == 500  # every span is accounted for
    assert queue.close()


def test_a_queue_with_room_does_not_wait() -> None:
    collector, counts = Collector(), SpanCounts()
    collector.gate.clear()
    queue = batches_for(collector, counts, capacity=1000, timeout=5.0)
    started = time.monotonic()
    queue.put(spans(0, 400))
    queue.put(spans(400, 400))
    assert time.monotonic() - started < 1
    assert counts.dropped == 0
    collector.gate.set()
    assert queue.flush()
    assert counts.exported == 800


@pytest.mark.parametrize("failure", ["refuse", "explode"])
def test_failed_batches_are_counted_and_later_ones_still_go(failure: str) -> None:
    """A collector that refuses a batch, or an exporter that raises: the batch is counted
    failed, and the queue goes on with the next one."""
    collector, counts = Collector(), SpanCounts()
    setattr(collector, failure, True)
    queue = batches_for(collector, counts, batch=10)
    queue.put(spans(0, 30))
    assert queue.flush()
    setattr(collector, failure, False)
    queue.put(spans(30, 5))
    assert queue.flush()
    assert (counts.failed, counts.exported) == (30, 5)
    assert queue.close()


def test_close_gives_up_on_a_hung_collector_within_its_timeout() -> None:
    collector, counts = Collector(), SpanCounts()
    collector.gate.clear()
    queue = batches_for(collector, counts, timeout=0.2)
    queue.put(spans(0, 10))
    started = time.monotonic()
    assert not queue.close(0.2)
    assert time.monotonic() - started < 2
    collector.gate.set()
