"""`SpanBatches`: spans encoded for OTLP, exported in batches by one thread of the span export
process (`caxton.observability.span_process`).

The process builds every span of a traced message as OTLP bytes (`_otlp_encode.span_bytes`) and
puts them here in chunks, a few hundred at a time; a thread takes them in batches of at most
`EXPORT_BATCH` spans and `MAX_REQUEST_BYTES`, writes the export request around them (the
process's one resource and scope, once per batch) and hands it to the OTLP exporter (the
SDK's, for gRPC or HTTP, with its retries, TLS and ``otlp_timeout``), counting each batch's
spans as exported or failed. Per span that is a list append where the SDK's batch processor
took a queue entry, a lock and a wake-up call (measured in the span export process: about an
eighth of its CPU time).

Batches are larger than the SDK's (512 spans): each request costs the exporter, and the
collector, a fixed amount of work besides its spans (measured with ``bench/bench_tracing.py``:
at a sample rate of 1.0 the same CPU handled about 5 % more messages with 2048). The byte
bound keeps a request well inside what collectors take by default (4 MiB for OTLP/gRPC).

The queue is bounded as the SDK's is, by ``otlp_max_queue_size`` spans. `put` waits while it is
full (the records behind it wait in the pipe and in the node's bounded `SpanLog`), at most
``otlp_timeout``: then what does not fit is dropped and counted (`SpanCounts.dropped`), as a
collector that is down or hung would have the SDK's queue drop spans.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from caxton.observability._otlp_encode import EncodedRequest, request_around
from caxton.observability._span_export import SpanCounts

__all__ = ["EXPORT_BATCH", "MAX_REQUEST_BYTES", "SpanBatches"]

#: Spans per export request at most (fewer when ``otlp_max_queue_size`` is smaller).
EXPORT_BATCH = 2048
#: Bytes of encoded spans per export request at most (a larger span goes alone).
MAX_REQUEST_BYTES = 2 << 20

_log = logging.getLogger("caxton.observability.spans")


class SpanBatches:
    """Encoded spans (each a ``ScopeSpans.spans`` field: `_otlp_encode.span_field`) queued for
    ``exporter`` and exported by a thread of their own (see the module)."""

    def __init__(
        self,
        exporter: SpanExporter,
        counts: SpanCounts,
        resource: Resource,
        scope: InstrumentationScope,
        *,
        capacity: int,
        timeout: float,
        batch: int = EXPORT_BATCH,
        max_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self._exporter = exporter
        self._counts = counts
        self._resource = resource
        self._scope = scope
        #: Spans the queue holds at most (``otlp_max_queue_size``).
        self.capacity = capacity
        self._timeout = timeout
        self._batch = max(1, min(batch, capacity))
        self._max_bytes = max_bytes
        self._spans: deque[bytes] = deque()
        self._exporting = 0  # spans taken by the thread and not exported yet
        self._closing = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="caxton-span-batches", daemon=True)
        self._thread.start()

    def queued(self) -> int:
        """Spans waiting for export now (the batch being exported included)."""
        return len(self._spans) + self._exporting

    def put(self, spans: list[bytes]) -> None:
        """Queue ``spans``; waits while the queue is full, at most ``otlp_timeout``, then drops
        (and counts) those that do not fit."""
        if not spans:
            return
        deadline = time.monotonic() + self._timeout
        queue = self._spans
        with self._changed:
            while len(queue) + len(spans) > self.capacity and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            room = max(0, self.capacity - len(queue))
            if room < len(spans):
                self._counts.add("dropped", len(spans) - room)
                spans = spans[:room]
            queue.extend(spans)
            self._changed.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is exported (or failed); False on ``timeout``
        (``otlp_timeout`` by default)."""
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        with self._changed:
            while self._spans or self._exporting:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._changed.wait(left)
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Export what is queued (within ``timeout``) and stop the thread; False if spans were
        left (they are dropped)."""
        done = self.flush(timeout)
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join(0 if not done else 1.0)
        return done

    def _run(self) -> None:
        queue = self._spans
        while True:
            with self._changed:
                while not queue and not self._closing:
                    self._changed.wait()
                if not queue:
                    return
                batch = [queue.popleft()]
                size, most, room = len(batch[0]), self._batch, self._max_bytes
                while queue and len(batch) < most and size + len(queue[0]) <= room:
                    span = queue.popleft()
                    size += len(span)
                    batch.append(span)
                self._exporting = len(batch)
                self._changed.notify_all()  # room for `put`
            try:
                self._export(batch)
            finally:
                with self._changed:
                    self._exporting = 0
                    self._changed.notify_all()

    def _export(self, batch: list[bytes]) -> None:
        try:
            data = request_around(self._resource, self._scope, batch)
            self._exporter.export(EncodedRequest(data, len(batch)))  # type: ignore[arg-type]
        except Exception:  # the thread goes on with the next batch
            # (a counting exporter counted the batch as failed already)
            _log.exception("exporting %d spans failed", len(batch))
