"""``temp_storage_limit``: the bytes all agents' granted directories may hold together.

Agents write files only in their granted directory (``/data``), and only through WASI's write
calls, which `wasi_quota` checks against one `TempStorage` per node before they reach the
disk. Usage is the sum of the regular files' sizes in the granted directories: measured by a
scan when a directory is first counted, then kept as "measured + written since + in flight"
(`reserve` before a write, `settle` after it); a write that would pass the limit triggers a
fresh scan first (files may have been deleted or overwritten in place), so a write is refused
only when the directories really are that full. Scans are throttled: within `RESCAN_INTERVAL`
of the last one, the running figure decides.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from caxton.clock import SYSTEM_CLOCK, Clock

__all__ = ["RESCAN_INTERVAL", "TempStorage", "directory_bytes"]

#: Least seconds between two scans triggered by writes near the limit.
RESCAN_INTERVAL = 0.1


def directory_bytes(root: Path) -> int:
    """The sizes of the regular files under ``root`` (0 if it does not exist)."""
    total = 0
    stack = [str(root)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:  # removed meanwhile, or not a directory
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
    return total


class TempStorage:
    """The node's account of granted-directory bytes (thread-safe: workers write concurrently)."""

    def __init__(self, limit: int, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._dirs: set[Path] = set()
        self._measured = 0  # bytes found by the last scan
        self._written = 0  # bytes written since
        self._in_flight = 0  # bytes reserved by writes not settled yet
        self._scanned_at = -RESCAN_INTERVAL * 2
        #: Writes refused so far (for statistics).
        self.refused = 0

    def add(self, directory: Path) -> None:
        """Count ``directory`` (an agent's grant) from now on; idempotent."""
        with self._lock:
            if directory not in self._dirs:
                self._dirs.add(directory)
                self._measured += directory_bytes(directory)

    def discard(self, directory: Path) -> None:
        """Stop counting ``directory`` (its agent was removed)."""
        with self._lock:
            if directory in self._dirs:
                self._dirs.discard(directory)
                self._rescan()

    @property
    def used(self) -> int:
        """Bytes in use by the latest account (measured, written since, in flight)."""
        return self._measured + self._written + self._in_flight

    def _rescan(self) -> None:
        self._measured = sum(directory_bytes(d) for d in self._dirs)
        self._written = 0
        self._scanned_at = self._clock.monotonic()

    def reserve(self, n: int) -> bool:
        """May a write add ``n`` bytes? If so they count as in flight until `settle`."""
        if n <= 0:
            return True
        with self._lock:
            if self.used + n > self.limit:
                if self._clock.monotonic() - self._scanned_at >= RESCAN_INTERVAL:
                    self._rescan()
                if self.used + n > self.limit:
                    self.refused += 1
                    return False
            self._in_flight += n
            return True

    def settle(self, reserved: int, written: int) -> None:
        """A write that reserved ``reserved`` bytes is done and added ``written`` of them."""
        if reserved > 0:
            with self._lock:
                self._in_flight = max(0, self._in_flight - reserved)
                self._written += max(0, min(written, reserved))
