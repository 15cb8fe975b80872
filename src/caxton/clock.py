"""`Clock`: the one way time is injected (so tests move time instead of sleeping).

Three readings: `Clock.monotonic` (seconds that never go back: intervals, deadlines, idle
times), `Clock.wall` (unix seconds: what is stored or shown) and `Clock.now` (the local time
as an aware datetime: log file rotation). Whatever takes a clock takes a `Clock`, with
`SYSTEM_CLOCK` as the default; a test passes a `ManualClock` and calls `ManualClock.advance`.

`SystemClock`'s readings are the ``time`` module's functions themselves, so code that keeps
``clock.monotonic`` in an attribute calls `time.monotonic` with no extra Python frame (the hot
path reads the clock per batch).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Monotonic seconds, wall-clock seconds and local time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (the origin means nothing)."""
        ...

    def wall(self) -> float:
        """Seconds since the unix epoch (may jump: NTP, an operator)."""
        ...

    def now(self) -> datetime:
        """The local time, timezone-aware."""
        ...


class SystemClock:
    """The machine's clocks."""

    monotonic = staticmethod(time.monotonic)
    wall = staticmethod(time.time)

    @staticmethod
    def now() -> datetime:
        return datetime.now().astimezone()


#: The clock everything uses unless a test injects another.
SYSTEM_CLOCK: Clock = SystemClock()


class ManualClock:
    """Time that moves only when a test says so (`advance`).

    ``wall`` is unix seconds or a datetime (naive means local time); both readings advance
    together.
    """

    def __init__(self, monotonic: float = 1000.0, *, wall: float | datetime = 1.7e9) -> None:
        self._monotonic = float(monotonic)
        self._wall = wall.timestamp() if isinstance(wall, datetime) else float(wall)

    def monotonic(self) -> float:
        return self._monotonic

    def wall(self) -> float:
        return self._wall

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._wall).astimezone()

    def advance(
        self,
        seconds: float = 0.0,
        *,
        minutes: float = 0.0,
        hours: float = 0.0,
        days: float = 0.0,
    ) -> None:
        """Move both clocks forward by the sum of the arguments."""
        step = timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days)
        self._monotonic += step.total_seconds()
        self._wall += step.total_seconds()

    def set_wall(self, wall: float | datetime) -> None:
        """Set the wall clock only (a jump, as NTP or an operator makes one)."""
        self._wall = wall.timestamp() if isinstance(wall, datetime) else float(wall)
