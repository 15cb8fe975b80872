"""`LogThrottle`: at most N log lines a second for what a client controls, then one summary.

A line per malformed request lets one hostile client write the log as fast as it can send
bytes. The throttle lets the first `per_second` lines of each one-second window through; the
rest are counted (with the clients they came from), and when the window ends one summary line
says how many were left out, so nothing is silently lost and the log grows by at most
``per_second + 1`` lines a second whatever the client does.

The summary is written by a timer on the event loop when the window ends (not by the next
request, which may never come). One throttle per event loop (`for_loop`): a process serves
from one loop; tests that start several loops get one each.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

__all__ = ["LogThrottle"]

#: Clients named in a summary line; the rest are counted only.
_NAMED_CLIENTS = 5
#: Clients counted apart in one window; more are still counted in the total.
_MAX_CLIENTS = 1000


class LogThrottle:
    """Rate limit for one kind of log line (see the module docstring)."""

    def __init__(
        self, logger: logging.Logger, what: str, *, per_second: int, window: float = 1.0
    ) -> None:
        self.logger = logger
        #: What the lines are about, for the summary: "malformed HTTP requests".
        self.what = what
        self.per_second = per_second
        self.window = window
        self._window_start = float("-inf")  # the first line opens a window
        self._logged = 0
        self._suppressed = 0
        self._clients: dict[str, int] = {}
        self._summary: asyncio.TimerHandle | None = None

    @classmethod
    def for_loop(cls, logger: logging.Logger, what: str, *, per_second: int) -> LogThrottle:
        """The throttle for `what` on the running event loop (made on first use)."""
        loop = asyncio.get_running_loop()
        throttles = _PER_LOOP.setdefault(loop, {})
        throttle = throttles.get(what)
        if throttle is None:
            throttle = throttles[what] = cls(logger, what, per_second=per_second)
        return throttle

    @property
    def suppressed(self) -> int:
        """Lines left out in the current window (not summarised yet)."""
        return self._suppressed

    def allow(self, client: str | None) -> bool:
        """True if the caller may log its line now; otherwise it is counted for the summary."""
        now = time.monotonic()
        if now - self._window_start >= self.window:
            self.flush()
            self._window_start = now
            self._logged = 0
        if self._logged < self.per_second:
            self._logged += 1
            return True
        self._suppressed += 1
        name = client or "unknown"
        if name in self._clients or len(self._clients) < _MAX_CLIENTS:
            self._clients[name] = self._clients.get(name, 0) + 1
        if self._summary is None:
            delay = max(0.0, self._window_start + self.window - now)
            self._summary = asyncio.get_running_loop().call_later(delay, self.flush)
        return False

    def flush(self) -> None:
        """Write the summary of the lines left out so far, if any."""
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None
        count, clients = self._suppressed, self._clients
        if not count:
            return
        self._suppressed, self._clients = 0, {}
        busiest = sorted(clients.items(), key=lambda item: -item[1])[:_NAMED_CLIENTS]
        named = ", ".join(f"{client} ({n})" for client, n in busiest)
        more = len(clients) - len(busiest)
        self.logger.warning(
            "%d more %s in the last %.0fs not logged one by one (over %d a second), from %s%s",
            count,
            self.what,
            self.window,
            self.per_second,
            named,
            f" and {more} more clients" if more > 0 else "",
            extra={"suppressed": count, "clients": len(clients)},
        )


_PER_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, LogThrottle]] = (
    weakref.WeakKeyDictionary()
)
