"""Runtime counters: plain integers on the hot path, a frozen snapshot on demand.

Each worker thread owns one `WorkerCounters` (no locks, no lost increments); `statistics()`
sums them. The metrics layer derives Prometheus metrics from `RuntimeStatistics` at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["DEFAULT_BUCKETS", "STATUSES", "RuntimeStatistics", "WorkerCounters"]

#: Execution outcomes: "ok" plus every `AgentFailure.cause`.
STATUSES = (
    "ok",
    "returned_error",
    "trap",
    "deadline",
    "stack_overflow",
    "out_of_fuel",
    "memory_limit",
    "exit",
)
_INDEX = {status: i for i, status in enumerate(STATUSES)}
DEFAULT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 1.0, 10.0)


class WorkerCounters:
    """Counters one worker updates (single writer)."""

    __slots__ = ("bounds", "buckets", "duration_sum", "executions")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.executions = [0] * len(STATUSES)
        self.buckets = [0] * (len(self.bounds) + 1)
        self.duration_sum = 0.0

    def record(self, status: str, seconds: float) -> None:
        """Count one execution with its duration."""
        self.executions[_INDEX.get(status, 2)] += 1
        self.buckets[bisect_left(self.bounds, seconds)] += 1
        self.duration_sum += seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeStatistics:
    """A snapshot of the whole runtime."""

    executions: Mapping[str, int]  # status -> count
    duration_bounds: tuple[float, ...]  # histogram upper bounds (seconds)
    duration_buckets: tuple[int, ...]  # per-bucket counts (not cumulative); last is +Inf
    duration_sum: float
    memory_bytes: int  # linear memory of live instances
    agents_total: int
    agents_active: int  # with a live instance
    agents_hibernated: int
    agents_failed: int
    hibernations: int
    restarts: int
    mailbox_depth: int  # messages queued over all agents
    workers: int
    temp_storage_bytes: int = 0  # files in granted directories (`temp_storage_limit`'s account)
    temp_storage_limit: int = 0
    temp_storage_refused: int = 0  # writes refused with ENOSPC
    #: Agent name -> (log lines, bytes) dropped over its log rate budget (agents with drops).
    logs_dropped: Mapping[str, tuple[int, int]] = field(default_factory=dict)


def merge(counters: Sequence[WorkerCounters]) -> tuple[dict[str, int], tuple[int, ...], float]:
    """Sum worker counters: (executions by status, bucket counts, duration sum)."""
    executions = [0] * len(STATUSES)
    buckets = [0] * (len(counters[0].buckets) if counters else 1)
    total = 0.0
    for c in counters:
        for i, v in enumerate(c.executions):
            executions[i] += v
        for i, v in enumerate(c.buckets):
            buckets[i] += v
        total += c.duration_sum
    return dict(zip(STATUSES, executions, strict=True)), tuple(buckets), total
