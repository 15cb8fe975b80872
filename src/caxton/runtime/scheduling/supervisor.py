"""Restart budget: an agent that keeps crashing is marked failed instead of restarted forever.

At most `max_restarts` crash restarts within `window` seconds; the next crash inside the window
exhausts the budget and the agent goes to state ``failed`` until someone starts it again.
"""

from __future__ import annotations

from collections import deque

__all__ = ["RestartBudget"]


class RestartBudget:
    """A sliding-window counter of crash restarts (one agent; touched by its worker only)."""

    __slots__ = ("_times", "max_restarts", "window")

    def __init__(self, max_restarts: int = 5, window: float = 60.0) -> None:
        self.max_restarts = max_restarts
        self.window = window
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Record a crash at ``now``; True if the agent may be restarted."""
        times = self._times
        while times and now - times[0] > self.window:
            times.popleft()
        if len(times) >= self.max_restarts:
            return False
        times.append(now)
        return True

    def reset(self) -> None:
        """Forget past crashes (an explicit start)."""
        self._times.clear()
