"""`configure_tracing`: OpenTelemetry spans exported over OTLP/gRPC or OTLP/HTTP, or a no-op.

With ``enable_tracing = true`` and an ``otlp_endpoint``, spans go through a bounded
`BatchSpanProcessor` to the OTLP exporter that `caxton.config.otlp.otlp_target` chooses from
``otlp_endpoint`` and ``otlp_protocol``: gRPC (``TraceService/Export``; port 4317, ``grpc://``)
or HTTP (``POST`` with ``Content-Type: application/x-protobuf``; port 4318, a ``/v1/traces``
path). A bare HTTP endpoint gets the standard ``/v1/traces`` appended. Each export (retries
included) times out after ``otlp_timeout`` seconds, for both protocols.

Jaeger's legacy Thrift URL (port 14268 or ``/api/traces``, the seed's example) does not take
OTLP: `configure_tracing` logs one warning saying what to use instead and returns the no-op
tracer (no spans are made or exported), unless ``otlp_protocol`` says it is OTLP after all.

Sampling is ``ParentBased(TraceIdRatioBased(trace_sample_rate))``: a trace that arrives with a
sampling decision (a ``traceparent`` from a client or another node) keeps it; a trace started
here is kept with probability ``trace_sample_rate``. ``0`` exports nothing, ``1`` everything.

Otherwise (tracing disabled or no endpoint) `Tracing.tracer` is OpenTelemetry's no-op tracer, so
code can create spans unconditionally at almost no cost.

The provider is *not* installed as OpenTelemetry's global provider (that can be done only once
per process, so tests could not undo it); code gets its tracer from `Tracing.tracer`.

Failure: a bad sample rate or endpoint raises `ConfigError` at configuration time. An
unreachable or hung collector never blocks or fails the node: ending a span only queues it (at
most ``otlp_max_queue_size``; beyond that the oldest is dropped), export happens on the
processor's thread, and `Tracing.metric_samples` counts spans exported, failed and dropped
(``caxton_trace_spans_*_total``). `Tracing.shutdown` gives up after ``otlp_timeout`` or the
shorter wait its caller gives.

Shutdown makes one last attempt per queued batch and no retries: the exporter's retry backoff
(about 1 s, then 2 s, 4 s, ...) would otherwise hold a stopping node for up to ``otlp_timeout``
after its drain is done, for a collector that is down. A stopping node also waits only briefly
for that attempt (`caxton.server` passes ``timeout``): a collector that accepts connections
but never answers (hung, or a firewall that drops packets) held the node for ``otlp_timeout``
(10 s by default) after its drain was done; the spans still queued then are dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import trace

from caxton._version import __version__
from caxton.config import ObservabilityConfig
from caxton.config.otlp import LegacyJaeger, OtlpTarget, otlp_target
from caxton.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from caxton.observability._span_export import CountingBatchSpanProcessor

__all__ = ["Tracing", "configure_tracing", "otlp_traces_url"]

log = logging.getLogger("caxton.observability.tracing")

_TRACES_PATH = "/v1/traces"


def otlp_traces_url(endpoint: str) -> str:
    """The OTLP/HTTP URL for `endpoint`: as given, plus ``/v1/traces`` when it has no path.

    Only the URL arithmetic: whether `endpoint` means OTLP/HTTP at all (and not gRPC, or
    Jaeger's Thrift collector) is `caxton.config.otlp.otlp_target`'s call, which
    `configure_tracing` makes. Raises `ConfigError` unless `endpoint` is an ``http``/``https``
    URL with a host.
    """
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"observability.otlp_endpoint: {endpoint!r} is not an http(s) URL "
            "(for example http://otel-collector:4318/v1/traces)",
            details={"key": "observability.otlp_endpoint", "value": endpoint},
        )
    if parts.path in ("", "/"):
        parts = parts._replace(path=_TRACES_PATH)
    return urlunsplit(parts)


@dataclass(eq=False)
class Tracing:
    """The node's tracer and, when exporting, the provider behind it."""

    #: Where spans are created; a no-op tracer when tracing is off.
    tracer: trace.Tracer
    #: The SDK provider, or None when tracing is off.
    provider: TracerProvider | None = None
    #: Bound on `shutdown` (``otlp_timeout``).
    timeout: float = 10.0
    #: The OTLP exporter, told to stop retrying at `shutdown`; None when tracing is off.
    exporter: Any = None
    #: Where spans go; None when tracing is off.
    target: OtlpTarget | None = None
    #: The bounded queue and its counts; None when tracing is off.
    processor: CountingBatchSpanProcessor | None = None

    @property
    def enabled(self) -> bool:
        """True when spans are exported."""
        return self.provider is not None

    def force_flush(self) -> bool:
        """Export the spans ended so far; False if that did not finish within the timeout."""
        provider = self.provider
        if provider is None:
            return True
        return self._bounded(lambda: provider.force_flush(int(self.timeout * 1000)))

    def shutdown(self, timeout: float | None = None) -> bool:
        """Export what is queued and stop. Idempotent.

        Waits at most ``otlp_timeout``, or `timeout` seconds if that is shorter. Returns False
        if the export did not finish in time (the rest is dropped).
        """
        provider, self.provider = self.provider, None
        self.tracer = trace.NoOpTracer()
        if provider is None:
            return True
        self.stop_retrying()
        wait = self.timeout if timeout is None else min(timeout, self.timeout)
        return self._bounded(provider.shutdown, wait)

    def stop_retrying(self) -> None:
        """Make the exporter give up a failed export at once from now on (`shutdown` does this
        first; see `_stop_retrying`)."""
        _stop_retrying(self.exporter)

    def metric_samples(self) -> Iterator[tuple[str, str, dict[str, str], int, str]]:
        """Snapshot records (`caxton.observability.snapshot`) of the export pipeline.

        ``trace_spans_exported``, ``trace_spans_export_failed`` and ``trace_spans_dropped``
        (counters), ``trace_span_queue_size`` and ``trace_span_queue_capacity`` (gauges).
        """
        processor = self.processor
        if processor is None:
            return
        counts = processor.counts
        yield (
            "trace_spans_exported",
            "counter",
            {},
            counts.exported,
            "Spans the trace collector accepted.",
        )
        yield (
            "trace_spans_export_failed",
            "counter",
            {},
            counts.failed,
            "Spans in export requests that failed (collector down, hung past otlp_timeout,"
            " or refusing), after retries.",
        )
        yield (
            "trace_spans_dropped",
            "counter",
            {},
            counts.dropped,
            "Spans dropped without an export attempt because the span queue was full"
            " (otlp_max_queue_size).",
        )
        yield (
            "trace_span_queue_size",
            "gauge",
            {},
            processor.queued(),
            "Finished spans waiting for export.",
        )
        yield (
            "trace_span_queue_capacity",
            "gauge",
            {},
            processor.capacity,
            "Spans the export queue holds (otlp_max_queue_size).",
        )

    def _bounded(self, action: Callable[[], object], wait: float | None = None) -> bool:
        # The SDK's flush and shutdown do not honour a deadline themselves; running them on a
        # helper thread and waiting at most `timeout` keeps a dead collector from holding up a
        # node's shutdown. The daemon thread finishes (or dies with the process) on its own.
        worker = threading.Thread(target=action, name="caxton-tracing-flush", daemon=True)
        worker.start()
        worker.join(self.timeout if wait is None else wait)
        return not worker.is_alive()


def _stop_retrying(exporter: Any) -> None:
    """Make `exporter` give up a failed export at once instead of sleeping before a retry.

    The OTLP exporter waits between retries on an event that its own shutdown sets, but the
    SDK shuts the exporter down only after the final flush (which is what retries). Setting that
    event first keeps the final flush's first attempt and skips the backoff sleeps, including
    one a background export is in right now. The event is not public API: where an exporter
    version keeps it elsewhere, nothing changes (shutdown is still bounded by ``otlp_timeout``).
    """
    for owner, name in ((getattr(exporter, "_client", None), "_shutdown_event"),
                        (exporter, "_shutdown_in_progress")):  # fmt: skip
        event = getattr(owner, name, None)
        if isinstance(event, threading.Event):
            event.set()


def configure_tracing(
    config: ObservabilityConfig,
    *,
    service_name: str = "caxton",
    node_id: str | None = None,
) -> Tracing:
    """A `Tracing` that exports as `config` says, or a no-op one (see the module docstring).

    Args:
        config: the ``[observability]`` section.
        service_name: the ``service.name`` resource attribute.
        node_id: the ``service.instance.id`` resource attribute (the node's name), if known.

    Raises:
        ConfigError: ``trace_sample_rate`` is outside 0..1, ``otlp_max_queue_size`` below 1,
            or ``otlp_endpoint`` is not a URL or contradicts ``otlp_protocol``.
    """
    off = Tracing(tracer=trace.NoOpTracer(), timeout=config.otlp_timeout)
    if not config.enable_tracing or not config.otlp_endpoint:
        return off
    rate = config.trace_sample_rate
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(
            f"observability.trace_sample_rate: {rate!r} is not between 0 and 1",
            details={"key": "observability.trace_sample_rate", "value": rate},
        )
    if config.otlp_max_queue_size < 1:
        raise ConfigError(
            f"observability.otlp_max_queue_size: {config.otlp_max_queue_size!r} is not 1 or more",
            details={"key": "observability.otlp_max_queue_size"},
        )
    key = "otlp_endpoint" if config.otlp_protocol is None else "otlp_protocol"
    try:
        target = otlp_target(config.otlp_endpoint, config.otlp_protocol)
    except ValueError as exc:
        raise ConfigError(
            f"observability.{key}: {exc}",
            details={"key": f"observability.{key}", "value": config.otlp_endpoint},
        ) from None
    if isinstance(target, LegacyJaeger):
        log.warning(target.warning(), extra={"otlp_endpoint": config.otlp_endpoint})
        return off
    # The SDK and the exporter load only when tracing is on: they cost startup time.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from caxton.observability._span_export import (
        CountingBatchSpanProcessor,
        CountingExporter,
        SpanCounts,
        otlp_exporter,
    )

    attributes: dict[str, str] = {"service.name": service_name, "service.version": __version__}
    if node_id:
        attributes["service.instance.id"] = node_id
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(rate)),
        resource=Resource.create(attributes),
        shutdown_on_exit=False,
    )
    exporter = otlp_exporter(target, config.otlp_timeout)
    counts = SpanCounts()
    processor = CountingBatchSpanProcessor(
        CountingExporter(exporter, counts), counts, config.otlp_max_queue_size
    )
    provider.add_span_processor(processor)
    log.info("tracing: exporting spans %s", target.describe())
    return Tracing(
        tracer=provider.get_tracer("caxton", __version__),
        provider=provider,
        timeout=config.otlp_timeout,
        exporter=exporter,
        target=target,
        processor=processor,
    )
