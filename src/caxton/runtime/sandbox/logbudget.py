"""Per-agent log rate budget: bytes and lines per second, with a burst of one second's worth.

Every line an agent logs (``caxton.log``, WASI stdout/stderr) asks `LogBudget.admit` first. Two
token buckets refill continuously at ``bytes_per_second`` and ``lines_per_second`` and hold at
most one second's worth; a line that finds either empty is dropped and counted (`dropped`,
`dropped_bytes`: totals for metrics). Drops are summarised in one warning per agent per
`INTERVAL` on the agent's logger ("agent X: dropped N log lines (B bytes) in the last 1s: log
rate budget"): by the next drop after the interval, or by `summarise` (the runtime calls it
once a second, so the last interval of a flood is reported even when the agent goes quiet).

`admit` runs on the worker that runs the agent (one at a time); `summarise` may run on the
event loop at the same moment, so the drop path and the summary share a lock (the admitted
path takes none).
"""

from __future__ import annotations

import logging
import threading

from caxton.clock import SYSTEM_CLOCK, Clock

__all__ = ["INTERVAL", "LogBudget"]

#: Seconds covered by one summary line.
INTERVAL = 1.0


class LogBudget:
    """The log rate budget of one agent."""

    __slots__ = (
        "_bytes",
        "_bytes_rate",
        "_lines",
        "_lines_rate",
        "_lock",
        "_logger",
        "_monotonic",
        "_name",
        "_refilled",
        "_window_bytes",
        "_window_lines",
        "_window_start",
        "dropped",
        "dropped_bytes",
    )

    def __init__(
        self,
        name: str,
        *,
        bytes_per_second: int,
        lines_per_second: int,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._name = name
        self._logger = logging.getLogger(f"caxton.agent.{name}")
        self._bytes_rate = float(bytes_per_second)
        self._lines_rate = float(lines_per_second)
        self._bytes = self._bytes_rate
        self._lines = self._lines_rate
        self._monotonic = clock.monotonic  # `time.monotonic` itself for the system clock
        self._refilled = self._monotonic()
        self._lock = threading.Lock()
        self._window_start: float | None = None  # when the first unreported drop happened
        self._window_lines = 0
        self._window_bytes = 0
        #: Lines (and their bytes) dropped over the budget since the agent was created.
        self.dropped = 0
        self.dropped_bytes = 0

    def admit(self, size: int) -> bool:
        """May a line of ``size`` bytes be logged now? (Counts it as dropped if not.)"""
        now = self._monotonic()
        elapsed = now - self._refilled
        if elapsed > 0:
            self._refilled = now
            self._bytes = min(self._bytes_rate, self._bytes + elapsed * self._bytes_rate)
            self._lines = min(self._lines_rate, self._lines + elapsed * self._lines_rate)
        if self._lines >= 1.0 and self._bytes >= size:
            self._lines -= 1.0
            self._bytes -= size
            return True
        with self._lock:
            self.dropped += 1
            self.dropped_bytes += size
            if self._window_start is None:
                self._window_start = now
            elif now - self._window_start >= INTERVAL:
                self._report()
                self._window_start = now
            self._window_lines += 1
            self._window_bytes += size
        return False

    def summarise(self) -> None:
        """Report the drops of an interval that has ended (called about once a second)."""
        if self._window_start is None:
            return
        with self._lock:
            start = self._window_start
            if start is not None and self._monotonic() - start >= INTERVAL:
                self._report()
                self._window_start = None

    def _report(self) -> None:
        """Log the window's drops (all within `INTERVAL` of its start) and empty it."""
        lines, size = self._window_lines, self._window_bytes
        self._window_lines = self._window_bytes = 0
        if lines:
            self._logger.warning(
                "agent %s: dropped %d log lines (%d bytes) in the last %.0fs: log rate budget",
                self._name,
                lines,
                size,
                INTERVAL,
            )
