"""The bridge from the core's `statistics()` snapshots to Prometheus, built at scrape time.

Why a bridge. The runtime, mailboxes, router and cluster keep plain integer counters on their
hot paths and expose them as frozen `statistics()` snapshots; they never import
`prometheus_client` (or anything in ``caxton.observability``). At scrape time, a
`SnapshotCollector` calls each registered *source* — a zero-argument callable, usually a small
function next to the server's composition code — and turns the records it yields into
Prometheus metric families named ``{prefix}_{name}``.

What a source yields. Plain tuples, so the core needs no import from here; `Sample` and
`HistogramSnapshot` are `NamedTuple` spellings of the same shapes:

* ``(name, "counter", labels, value)`` — a monotonically increasing total. ``name`` has no
  ``_total`` suffix (one given is dropped); the exposition adds it.
* ``(name, "gauge", labels, value)`` — a value that goes up and down.
* ``(name, "histogram", labels, (bounds, counts, sum, count))`` — ``bounds`` are the finite
  bucket upper bounds, ascending; ``counts[i]`` is the number of observations in bucket ``i``
  alone (``bounds[i-1] < v <= bounds[i]``, *not* cumulative), so ``len(counts) == len(bounds)``;
  ``count`` is the total number of observations including those above the last bound, and
  ``sum`` their sum. The collector makes the buckets cumulative and adds ``+Inf``.

``labels`` is a mapping from label name to value (values are ``str()``'d); use ``{}`` for none.
An optional fifth element is the help text. Records with the same name form one family; they
must agree on the kind.

Failure. A scrape never fails because of one source: a source that raises is skipped and
``{prefix}_snapshot_source_up{source}`` reads 0 for it (1 when it answered); a malformed record
(bad name, unknown kind, inconsistent histogram, a kind conflict, a repeated label set) is
dropped and logged at warning level on ``caxton.observability``. Sources run on the scraping
thread, so they must be cheap and safe to call from any thread — reading a snapshot is.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

__all__ = ["HistogramSnapshot", "Sample", "SampleKind", "SnapshotCollector", "SnapshotSource"]

logger = logging.getLogger("caxton.observability")

SampleKind = Literal["counter", "gauge", "histogram"]

_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class HistogramSnapshot(NamedTuple):
    """Per-bucket counts of a histogram (see the module docstring for the exact meaning)."""

    bounds: Sequence[float]
    counts: Sequence[int]
    sum: float
    #: All observations, including those above the last bound (Prometheus ``_count``).
    observations: int


class Sample(NamedTuple):
    """One record a snapshot source yields; a plain tuple of the same shape is accepted too."""

    name: str
    kind: SampleKind
    labels: Mapping[str, object]
    value: float | HistogramSnapshot | tuple[Sequence[float], Sequence[int], float, int]
    help: str = ""


#: A zero-argument callable yielding `Sample`-shaped tuples.
SnapshotSource = Callable[[], Iterable[Sequence[Any]]]


class _Invalid(ValueError):
    """A record that cannot be exposed; the message says why."""


def _labels(raw: object) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise _Invalid(f"labels must be a mapping, not {type(raw).__name__}")
    labels = {str(k): str(v) for k, v in raw.items()}
    for key in labels:
        if not _NAME.fullmatch(key) or key.startswith("__"):
            raise _Invalid(f"invalid label name {key!r}")
    return labels


def _histogram_samples(
    name: str, labels: dict[str, str], raw: Any
) -> list[tuple[str, dict[str, str], float]]:
    try:
        raw_bounds, raw_counts, raw_sum, raw_count = raw
        bounds = [float(b) for b in raw_bounds]
        counts = [int(c) for c in raw_counts]
        total, count = float(raw_sum), int(raw_count)
    except (TypeError, ValueError) as exc:
        raise _Invalid(f"histogram value must be (bounds, counts, sum, count): {exc}") from exc
    if len(bounds) != len(counts):
        raise _Invalid(f"{len(bounds)} bounds but {len(counts)} bucket counts")
    if any(not math.isfinite(b) for b in bounds) or any(
        a >= b for a, b in itertools.pairwise(bounds)
    ):
        raise _Invalid("bucket bounds must be finite and strictly ascending")
    if any(c < 0 for c in counts) or sum(counts) > count:
        raise _Invalid("bucket counts must be non-negative and add up to at most count")
    samples: list[tuple[str, dict[str, str], float]] = []
    cumulative = 0
    for bound, bucket in zip(bounds, counts, strict=True):
        cumulative += bucket
        samples.append((f"{name}_bucket", {**labels, "le": _le(bound)}, float(cumulative)))
    samples.append((f"{name}_bucket", {**labels, "le": "+Inf"}, float(count)))
    samples.append((f"{name}_count", labels, float(count)))
    samples.append((f"{name}_sum", labels, total))
    return samples


def _le(bound: float) -> str:
    # The spelling prometheus_client uses for its own histograms ("0.005", "1.0", "10.0").
    return repr(float(bound))


class SnapshotCollector(Collector):
    """A Prometheus collector over named snapshot sources (see the module docstring).

    Register it once on a `CollectorRegistry`; `add_source`/`remove_source` may be called at
    any time from any thread.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._sources: dict[str, SnapshotSource] = {}

    def add_source(self, name: str, source: SnapshotSource) -> None:
        """Call `source` on every scrape. Raises `ValueError` if `name` is taken."""
        with self._lock:
            if name in self._sources:
                raise ValueError(f"a snapshot source named {name!r} is registered already")
            self._sources[name] = source

    def remove_source(self, name: str) -> None:
        """Stop calling the source `name` (no error if there is none)."""
        with self._lock:
            self._sources.pop(name, None)

    @property
    def source_names(self) -> tuple[str, ...]:
        """The registered source names, in registration order."""
        with self._lock:
            return tuple(self._sources)

    def describe(self) -> list[Metric]:
        # Empty: the registry must not call the sources when this collector is registered.
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sources = list(self._sources.items())
        families: dict[str, Metric] = {}
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        up = Metric(
            f"{self.prefix}_snapshot_source_up",
            "1 if the snapshot source answered the last scrape, 0 if it raised.",
            "gauge",
        )
        for source_name, source in sources:
            try:
                records = list(source())
            except Exception:
                logger.warning(
                    "metrics snapshot source failed", exc_info=True, extra={"source": source_name}
                )
                up.add_sample(up.name, {"source": source_name}, 0.0)
                continue
            up.add_sample(up.name, {"source": source_name}, 1.0)
            for record in records:
                try:
                    self._add(families, seen, record)
                except _Invalid as exc:
                    logger.warning(
                        "metrics snapshot record dropped: %s",
                        exc,
                        extra={"source": source_name, "record": record},
                    )
        yield up
        yield from families.values()

    def _add(
        self,
        families: dict[str, Metric],
        seen: set[tuple[str, tuple[tuple[str, str], ...]]],
        record: Sequence[Any],
    ) -> None:
        try:
            name, kind, raw_labels, value, *rest = record
        except (TypeError, ValueError) as exc:
            raise _Invalid("a record is (name, kind, labels, value[, help])") from exc
        name = str(name)
        if kind == "counter" and name.endswith("_total"):
            name = name[: -len("_total")]
        if not _NAME.fullmatch(name):
            raise _Invalid(f"invalid metric name {name!r}")
        if kind not in ("counter", "gauge", "histogram"):
            raise _Invalid(f"unknown kind {kind!r} (counter, gauge or histogram)")
        full = f"{self.prefix}_{name}"
        labels = _labels(raw_labels)
        key = (full, tuple(sorted(labels.items())))
        if key in seen:
            raise _Invalid(f"{full} repeated with labels {labels}")
        family = families.get(full)
        if family is not None and family.type != kind:
            raise _Invalid(f"{full} is a {family.type}, not a {kind}")
        if kind == "histogram":
            samples = _histogram_samples(full, labels, value)
        else:
            try:
                number = float(value)
            except (TypeError, ValueError) as exc:
                raise _Invalid(f"{full} value {value!r} is not a number") from exc
            suffix = "_total" if kind == "counter" else ""
            samples = [(f"{full}{suffix}", labels, number)]
        if family is None:
            help_text = str(rest[0]) if rest and rest[0] else f"{name} (from statistics())"
            family = families[full] = Metric(full, help_text, kind)
        seen.add(key)
        for sample_name, sample_labels, sample_value in samples:
            family.add_sample(sample_name, sample_labels, sample_value)
