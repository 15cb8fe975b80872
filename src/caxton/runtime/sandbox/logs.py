"""Per-agent log lines: a bounded ring of recent lines, mirrored to Python logging.

Lines come from the ``caxton.log`` import and from the agent's WASI stdout/stderr. The ring keeps
the last `capacity` lines with their level and time (what ``caxton debug`` and a failed deploy
show); every line also goes to the logger ``caxton.agent.<name>``. Output is bounded per message
by the host (`host.LOG_BUDGET`) and per second by the agent's `LogBudget`; lines beyond either
are dropped and counted in `dropped`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

from caxton.runtime.sandbox.logbudget import LogBudget

__all__ = ["LEVELS", "LogLine", "LogRing", "OutputCapture"]

#: ABI log levels 0-3 mapped to Python logging levels.
LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
_NAMES = ("debug", "info", "warn", "error")
#: Longest single line kept (longer lines are cut).
MAX_LINE = 4096


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line an agent logged."""

    time: float  # wall-clock seconds
    level: str  # "debug" | "info" | "warn" | "error"
    text: str


class LogRing:
    """The recent log lines of one agent (thread-safe enough: one writer at a time)."""

    __slots__ = ("_lines", "_logger", "budget", "dropped_per_message", "output")

    def __init__(
        self,
        name: str,
        capacity: int = 256,
        *,
        bytes_per_second: int = 64 * 1024,
        lines_per_second: int = 200,
    ) -> None:
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self._logger = logging.getLogger(f"caxton.agent.{name}")
        #: The agent's log rate budget (bytes and lines per second).
        self.budget = LogBudget(
            name, bytes_per_second=bytes_per_second, lines_per_second=lines_per_second
        )
        #: Lines dropped because an agent exceeded its per-message output budget.
        self.dropped_per_message = 0
        #: Set when WASI output arrived during the current message (its captures need a reset).
        self.output = False

    @property
    def dropped(self) -> int:
        """Lines dropped over the per-message or the per-second budget."""
        return self.dropped_per_message + self.budget.dropped

    def write(self, level: int, text: str) -> None:
        """Record one line at ABI level ``level`` (clamped to 0-3), within the rate budget."""
        if self.budget.admit(min(len(text), MAX_LINE)):
            self.append(level, text)

    def append(self, level: int, text: str) -> None:
        """`write` for a line the rate budget has admitted already."""
        level = 0 if level < 0 else 3 if level > 3 else level
        if len(text) > MAX_LINE:
            text = text[:MAX_LINE] + "…"
        self._lines.append(LogLine(time.time(), _NAMES[level], text))
        py_level = LEVELS[level]
        if self._logger.isEnabledFor(py_level):
            self._logger.log(py_level, "%s", text)

    def error_during(self, seconds: float) -> str | None:
        """The last line logged at level error in the last ``seconds`` (the call that just
        failed): a Rust panic's text, an AssemblyScript abort, the reason an SDK logged."""
        since = time.time() - seconds - 0.001
        for line in reversed(self._lines):
            if line.time < since:
                break
            if line.level == "error" or "panicked at" in line.text:
                return line.text
        return None

    def recent(self, n: int | None = None) -> list[LogLine]:
        """The last ``n`` lines (all kept lines when None), oldest first."""
        lines = list(self._lines)
        return lines if n is None else lines[-n:] if n > 0 else []


class OutputCapture:
    """A WASI stdout/stderr sink that splits bytes into lines for a `LogRing`.

    ``budget`` bounds the bytes accepted per message (`reset` restores it); further output is
    swallowed and counted as dropped lines. With ``keep=True`` complete lines are also kept in
    `lines` (command agents' stdout carries their outgoing messages).
    """

    __slots__ = ("_budget", "_partial", "_ring", "budget", "keep", "level", "lines")

    def __init__(self, ring: LogRing, level: int, *, budget: int, keep: bool = False) -> None:
        self._ring = ring
        self.level = level
        self._budget = budget
        self.budget = budget
        self.keep = keep
        self.lines: list[bytes] = []
        self._partial = b""

    def __call__(self, data: bytes) -> int:
        """The WASI callback: accept ``data`` (always reports it all written)."""
        n = len(data)
        self._ring.output = True
        if n > self.budget:
            if self.budget > 0:
                self._ring.dropped_per_message += 1
            self.budget = 0
            return n
        self.budget -= n
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        for chunk in chunks:
            self._line(chunk)
        return n

    def _line(self, chunk: bytes) -> None:
        if self.keep:
            self.lines.append(chunk)
        else:
            self._ring.write(self.level, chunk.decode("utf-8", "replace"))

    def flush(self) -> None:
        """Emit a trailing partial line."""
        if self._partial:
            self._line(self._partial)
            self._partial = b""

    def reset(self) -> None:
        """Flush and restore the per-message budget."""
        self.flush()
        self.lines = []
        self.budget = self._budget
