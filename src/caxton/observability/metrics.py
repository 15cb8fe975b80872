"""`Metrics`: every Prometheus metric a node exposes, on one explicit registry.

`Metrics.create(registry)` builds the bundle; nothing is registered on prometheus_client's global
registry, so tests pass a fresh `CollectorRegistry` and two nodes in one process do not collide.
What is in it (``caxton`` stands for the configured ``metrics_prefix``):

=============================================  ==============================================
``caxton_http_requests_total``                 counter, ``method``, ``route``, ``status``
``caxton_http_request_duration_seconds``       histogram, ``method``, ``route``; the
                                               configured ``histogram_buckets``
``caxton_http_connections_active``             gauge: open HTTP connections
``caxton_build_info``                          gauge = 1, ``version``, ``python``, ``wasmtime``
``caxton_up``                                  gauge = 1 while the node serves metrics
``caxton_start_time_seconds``                  gauge: when the node started (Unix time)
``caxton_process_*``                           resident/virtual memory, CPU seconds, open and
                                               max fds, process start time (Linux ``/proc``)
``caxton_snapshot_source_up``                  gauge per snapshot source (see `snapshot`)
=============================================  ==============================================

``route`` is always a route *template* (``/api/v1/agents/{name}``), never a raw path, so a client
cannot create a time series per URL; requests that matched no route use ``"unmatched"``.
``method`` is one of the standard HTTP methods or ``"OTHER"``.

Agent, messaging and cluster metrics are not objects here: the core keeps plain counters and a
`statistics()` snapshot, and `register_snapshot_source` turns those into metric families at
scrape time (`caxton.observability.snapshot`).
"""

from __future__ import annotations

import importlib.metadata
import itertools
import math
import platform
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import choose_encoder

from caxton._version import __version__
from caxton.errors import ConfigError
from caxton.observability.snapshot import SnapshotCollector, SnapshotSource
from caxton.runtime.sandbox import accel

__all__ = ["DEFAULT_BUCKETS", "UNMATCHED_ROUTE", "Metrics", "render_metrics"]

#: The seed's ``histogram_buckets`` (seconds).
DEFAULT_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: The ``route`` label of requests that matched no route (404s).
UNMATCHED_ROUTE = "unmatched"

_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"}
)
_MAX_CACHED_CHILDREN = 4096
_PREFIX = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _check(prefix: str, buckets: Sequence[float]) -> tuple[float, ...]:
    if not _PREFIX.fullmatch(prefix):
        raise ConfigError(
            f"observability.metrics_prefix: {prefix!r} is not a valid Prometheus metric name "
            "prefix (letters, digits, '_' and ':', not starting with a digit)",
            details={"key": "observability.metrics_prefix", "value": prefix},
        )
    bounds = tuple(float(b) for b in buckets)
    if (
        not bounds
        or any(not math.isfinite(b) for b in bounds)
        or any(a >= b for a, b in itertools.pairwise(bounds))
    ):
        raise ConfigError(
            "observability.histogram_buckets: expected a non-empty list of finite numbers in "
            f"strictly ascending order, got {list(buckets)!r}",
            details={"key": "observability.histogram_buckets", "value": list(buckets)},
        )
    return bounds


@dataclass(frozen=True, slots=True, eq=False)
class Metrics:
    """The node's metric objects, all registered on `registry` (see the module docstring)."""

    registry: CollectorRegistry
    prefix: str
    buckets: tuple[float, ...]
    http_requests: Counter
    http_request_duration: Histogram
    http_connections_active: Gauge
    build_info: Gauge
    up: Gauge
    start_time: Gauge
    snapshots: SnapshotCollector
    #: Cached label children of the HTTP metrics (see `observe_http`).
    _http_children: dict[tuple[str, str | None, int], tuple[Any, Any]] = field(
        default_factory=dict, repr=False
    )

    @classmethod
    def create(
        cls,
        registry: CollectorRegistry,
        *,
        prefix: str = "caxton",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        start_time: float | None = None,
        process_metrics: bool = True,
    ) -> Metrics:
        """Build and register every metric on `registry`.

        Args:
            registry: where the metrics live; a fresh one per node (and per test).
            prefix: the ``metrics_prefix``; every metric name starts with ``{prefix}_``.
            buckets: the ``histogram_buckets`` of the request-duration histogram.
            start_time: the node's start (Unix seconds); now by default.
            process_metrics: add ``{prefix}_process_*`` (from ``/proc``, Linux only).

        Raises:
            ConfigError: `prefix` is not a valid metric name prefix, or `buckets` is empty,
                not finite or not strictly ascending.
            ValueError: these metrics are registered on `registry` already.
        """
        bounds = _check(prefix, buckets)
        metrics = cls(
            registry=registry,
            prefix=prefix,
            buckets=bounds,
            http_requests=Counter(
                "http_requests",
                "HTTP requests answered, by method, route template and status code.",
                ("method", "route", "status"),
                namespace=prefix,
                registry=registry,
            ),
            http_request_duration=Histogram(
                "http_request_duration_seconds",
                "Time from receiving an HTTP request to the end of its answer.",
                ("method", "route"),
                buckets=bounds,
                namespace=prefix,
                registry=registry,
            ),
            http_connections_active=Gauge(
                "http_connections_active",
                "HTTP connections open now.",
                namespace=prefix,
                registry=registry,
            ),
            build_info=Gauge(
                "build_info",
                "Always 1; the labels say which Caxton, Python and wasmtime are running, and"
                " which message hot path (c: the compiled extension, ctypes: without it).",
                ("version", "python", "wasmtime", "hot_path"),
                namespace=prefix,
                registry=registry,
            ),
            up=Gauge("up", "1 while the node is serving.", namespace=prefix, registry=registry),
            start_time=Gauge(
                "start_time_seconds",
                "When the node started, in seconds since the Unix epoch.",
                namespace=prefix,
                registry=registry,
            ),
            snapshots=SnapshotCollector(prefix),
        )
        metrics.build_info.labels(
            version=__version__,
            python=platform.python_version(),
            wasmtime=_package_version("wasmtime"),
            hot_path=accel.describe(),
        ).set(1)
        metrics.up.set(1)
        metrics.start_time.set(time.time() if start_time is None else start_time)
        registry.register(metrics.snapshots)
        if process_metrics:
            ProcessCollector(namespace=prefix, registry=registry)
        return metrics

    def observe_http(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """Count one answered request and its duration.

        `route` is the matched route's template (``/api/v1/agents/{name}``), or None /
        `UNMATCHED_ROUTE` when no route matched; never pass the raw request path.
        """
        key = (method, route, status)
        children = self._http_children.get(key)
        if children is None:
            # `labels()` validates and locks on every call (~8 µs); the children are cached per
            # (method, route template, status), a set bounded by the route table.
            verb = method.upper()
            if verb not in _METHODS:
                verb = "OTHER"
            template = route or UNMATCHED_ROUTE
            children = (
                self.http_requests.labels(method=verb, route=template, status=str(status)),
                self.http_request_duration.labels(method=verb, route=template),
            )
            if len(self._http_children) < _MAX_CACHED_CHILDREN:
                self._http_children[key] = children
        children[0].inc()
        children[1].observe(max(seconds, 0.0))

    def connection_opened(self) -> None:
        """One more HTTP connection is open."""
        self.http_connections_active.inc()

    def connection_closed(self) -> None:
        """One HTTP connection closed."""
        self.http_connections_active.dec()

    def register_snapshot_source(self, name: str, source: SnapshotSource) -> None:
        """Expose what `source()` yields on every scrape (format: `caxton.observability.snapshot`).

        Raises `ValueError` if a source called `name` is registered already.
        """
        self.snapshots.add_source(name, source)

    def unregister_snapshot_source(self, name: str) -> None:
        """Stop exposing the source `name` (no error if there is none)."""
        self.snapshots.remove_source(name)


def render_metrics(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """The exposition of `registry` as ``(body, content_type)`` for a ``/metrics`` answer.

    The Prometheus text format by default; OpenMetrics when `accept` (the request's ``Accept``
    header) asks for ``application/openmetrics-text``.
    """
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
