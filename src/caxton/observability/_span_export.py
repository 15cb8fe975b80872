"""The span pipeline behind `configure_tracing`: a bounded queue and an OTLP exporter, counted.

Imported only when tracing exports (it loads the OpenTelemetry SDK and an exporter).

`CountingBatchSpanProcessor` is the SDK's `BatchSpanProcessor`: ending a span only puts it on a
queue of at most ``otlp_max_queue_size`` spans (a deque append on the caller's thread), and a
background thread exports batches. When the queue is full, because the collector is slow, hung
or down, the oldest queued span is dropped; every drop is counted in `SpanCounts.dropped`. The
exporter is wrapped so that each batch's spans are counted as exported or failed.

The queue is the SDK's (``BatchProcessor._queue``), which is not public API: an SDK version that
keeps it elsewhere would leave `dropped` and `queued` at 0 (tests/observability checks both).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from caxton.config.otlp import OtlpTarget

__all__ = ["CountingBatchSpanProcessor", "CountingExporter", "SpanCounts", "otlp_exporter"]

#: Spans per export request (the SDK's default), or the whole queue when that is smaller.
MAX_EXPORT_BATCH = 512


@dataclass(eq=False)
class SpanCounts:
    """Spans by fate since start; read from any thread (each field is one int)."""

    #: Dropped because the queue was full.
    dropped: int = 0
    #: In batches the collector accepted.
    exported: int = 0
    #: In batches the collector refused or never answered (after the exporter's retries).
    failed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, spans: int) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + spans)


class CountingExporter(SpanExporter):
    """`inner`, counting each batch's spans as exported or failed in `counts`."""

    def __init__(self, inner: SpanExporter, counts: SpanCounts) -> None:
        self.inner = inner
        self.counts = counts

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:
            self.counts.add("failed", len(spans))
            raise
        outcome = "exported" if result is SpanExportResult.SUCCESS else "failed"
        self.counts.add(outcome, len(spans))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """A `BatchSpanProcessor` that counts the spans it drops because its queue is full."""

    def __init__(self, exporter: SpanExporter, counts: SpanCounts, max_queue_size: int) -> None:
        super().__init__(
            exporter,
            max_queue_size=max_queue_size,
            max_export_batch_size=min(MAX_EXPORT_BATCH, max_queue_size),
        )
        self.counts = counts
        self.capacity = max_queue_size
        batches = getattr(self, "_batch_processor", None)
        queue = getattr(batches, "_queue", None)
        self._queue: Sequence[Any] = queue if queue is not None else ()

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        self._count_drop()
        super().on_end(span)

    def _count_drop(self) -> None:
        """Count the span the next append pushes out of a full queue (the oldest)."""
        if len(self._queue) >= self.capacity:
            self.counts.add("dropped", 1)

    def queued(self) -> int:
        """Spans waiting for export now."""
        return len(self._queue)


def otlp_exporter(target: OtlpTarget, timeout: float) -> SpanExporter:
    """The OTLP exporter for `target` (gRPC or HTTP), each export bounded by `timeout` seconds;
    it encodes with `caxton.observability._otlp_encode` (the same requests, built faster)."""
    from caxton.observability._otlp_encode import install

    if target.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        install()
        return GrpcSpanExporter(endpoint=target.endpoint, insecure=target.insecure, timeout=timeout)
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    install()

    return OTLPSpanExporter(
        endpoint=target.endpoint,
        timeout=timeout,
        compression=Compression.NoCompression,
        session=_http_session(target.endpoint),
    )


def _http_session(endpoint: str) -> Any:
    """The HTTP session of an OTLP/HTTP exporter to ``endpoint``, or None for the SDK's own.

    A plain ``http`` endpoint that no proxy of the environment (``HTTP_PROXY``, ``NO_PROXY``,
    ...) applies to gets a `DirectSession` (one kept-alive `http.client` connection); behind a
    proxy, a requests session that read the proxy settings once, here, instead of for every
    export request (and looks for no ``~/.netrc``): per request, those lookups took about a
    sixth of the export thread's samples (py-spy on the span export process). An ``https``
    endpoint keeps the SDK's session, which also reads the CA bundle variables of the
    environment per request.
    """
    if not endpoint.startswith("http://"):
        return None
    import requests

    proxies = requests.utils.get_environ_proxies(endpoint)
    if not proxies:
        from caxton.observability._otlp_http import DirectSession

        return DirectSession(endpoint)
    session = requests.Session()
    session.trust_env = False
    session.proxies.update(proxies)
    return session
