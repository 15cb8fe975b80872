"""Logs, metrics and traces: the operator's view of a node.

A leaf package: it reads `caxton.config` and raises `caxton.errors`, and nothing in the core
imports it. The server wires it up at start:

* `configure_logging` installs the JSON/text log handler (stderr or a rotating file) with a
  `SecretMasker`;
* `Metrics.create` builds every Prometheus metric on an explicit registry, and
  `Metrics.register_snapshot_source` exposes the core's ``statistics()`` snapshots;
  `render_metrics` produces the ``/metrics`` answer;
* `configure_tracing` sets up OTLP/gRPC or OTLP/HTTP span export (or a no-op tracer).
"""

from caxton.observability.logging import LoggingSetup, SecretMasker, configure_logging
from caxton.observability.metrics import DEFAULT_BUCKETS, UNMATCHED_ROUTE, Metrics, render_metrics
from caxton.observability.snapshot import HistogramSnapshot, Sample, SnapshotCollector
from caxton.observability.tracing import Tracing, configure_tracing

__all__ = [
    "DEFAULT_BUCKETS",
    "UNMATCHED_ROUTE",
    "HistogramSnapshot",
    "LoggingSetup",
    "Metrics",
    "Sample",
    "SecretMasker",
    "SnapshotCollector",
    "Tracing",
    "configure_logging",
    "configure_tracing",
    "render_metrics",
]
