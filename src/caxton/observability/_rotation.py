"""`RotatingLogFileHandler`: a log file that rotates by an injected clock and prunes old files.

How rotation works here. The handler writes to one *active* file (``caxton.log``). Each record first
asks the clock (`caxton.clock.Clock.now`) what time it is; when that time falls into a later
*period* than the one the active file belongs to (a local calendar day for ``daily``, a local clock
hour for ``hourly``), the active file is closed and renamed after the period it holds —
``caxton.log.2024-05-01`` or ``caxton.log.2024-05-01-13`` — and a fresh active file is opened. If
that name is taken already (the node restarted within the period and rotated before), ``.1``,
``.2``, ... is appended.

At start the handler looks at an existing active file's modification time: a file left over
from an earlier period (the node was down over midnight) is rotated away before the first line
is written, so every rotated file holds one period only.

Retention. At start and after each rotation, rotated files whose period date is more than
``retention_days`` days before today are deleted; the date is read from the file name, never from
file times, so copying logs around does not change what is kept. ``retention_days <= 0`` keeps
everything.

Failure. Nothing here raises into the caller of ``logger.info()``: a failed rotation, rename,
delete or write goes to `handleError` and the handler keeps writing to whatever file it has
open. A disk that is full stays full for many lines, so `handleError` prints ONE line on stderr
when writing starts to fail (no traceback) and counts the lines it drops; the first line written
after that is preceded by one saying how many were dropped (in the file, and on stderr).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from datetime import date, datetime, timedelta
from io import TextIOWrapper
from pathlib import Path
from typing import Literal

from caxton.clock import SYSTEM_CLOCK, Clock

__all__ = ["RotatingLogFileHandler"]

Rotation = Literal["daily", "hourly", "never"]

_SUFFIX = re.compile(r"^\.(\d{4})-(\d{2})-(\d{2})(?:-(\d{2}))?(?:\.\d+)?$")


def _local(moment: datetime) -> datetime:
    """A naive datetime is local time already; an aware one is converted to local time."""
    return moment if moment.tzinfo is None else moment.astimezone()


def period_suffix(moment: datetime, rotation: Rotation) -> str:
    """The name suffix of the period `moment` falls into (empty for ``never``)."""
    local = _local(moment)
    if rotation == "daily":
        return local.strftime("%Y-%m-%d")
    if rotation == "hourly":
        return local.strftime("%Y-%m-%d-%H")
    return ""


def _stderr(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:
        pass


def _ends_mid_line(path: Path) -> bool:
    try:
        with open(path, "rb") as file:
            file.seek(-1, os.SEEK_END)
            return file.read(1) != b"\n"
    except OSError:  # empty or unreadable
        return False


def rotated_file_date(base: Path, candidate: Path) -> date | None:
    """The period date in a rotated file's name (``base.YYYY-MM-DD[-HH][.N]``), else None."""
    if not candidate.name.startswith(base.name):
        return None
    match = _SUFFIX.fullmatch(candidate.name[len(base.name) :])
    if match is None:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


class RotatingLogFileHandler(logging.FileHandler):
    """A `logging.FileHandler` that rotates by the injected `clock` (see the module docstring).

    Raises `OSError` from the constructor when the file cannot be opened; after that, failures
    are reported through `handleError` only.
    """

    def __init__(
        self,
        path: Path,
        *,
        rotation: Rotation,
        retention_days: int,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.path = Path(path)
        self.rotation: Rotation = rotation
        self.retention_days = retention_days
        self._clock = clock
        now = clock.now()
        self._period = period_suffix(now, rotation)
        #: Lines dropped since writing started to fail (0 while it works).
        self.dropped = 0
        self._failed = False  # set by handleError during one emit
        self._reported: set[str] = set()  # the errors told on stderr in this episode
        self._rotate_leftover(now)
        super().__init__(self.path, mode="a", encoding="utf-8")
        self._prune_quietly(now)

    def emit(self, record: logging.LogRecord) -> None:
        self._failed = False
        try:
            self._maybe_rotate()
        except Exception:  # rotation failed: report it and keep writing to the active file
            self._tell()
        try:
            if self.stream is None:
                self.stream = self._open()
        except Exception:
            self.handleError(record)
            return
        if self.dropped and not self._failed and not self._report_recovery(record):
            self.dropped += 1  # still failing: this line is dropped too
            return
        super().emit(record)  # reports its own write failures through handleError

    def handleError(self, record: logging.LogRecord) -> None:
        """Count the dropped line; say so on stderr once per episode and kind of error (a full
        disk is one line, however many lines it drops), without a traceback.

        The file is closed, dropping what its buffer still holds (a failed line must not turn up
        later, out of order); the next line opens it again.
        """
        self._failed = True
        self.dropped += 1
        stream, self.stream = self.stream, None
        if stream is not None:
            with contextlib.suppress(Exception):  # its flush fails again: the data goes
                stream.close()
        self._tell()

    def _tell(self) -> None:
        """Say on stderr what is failing now (in an ``except`` block), once per kind."""
        error = sys.exc_info()[1]
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        kind = f"{reason} ({type(error).__name__})"
        if kind in self._reported or len(self._reported) >= 8:
            return
        self._reported.add(kind)
        _stderr(
            f"caxton: cannot write the log file {self.path}: {kind}; log lines are dropped "
            "(and counted) until it can be written again"
        )

    def _report_recovery(self, record: logging.LogRecord) -> bool:
        """Write how many lines were dropped before ``record``; False if writing still fails."""
        dropped = self.dropped
        text = f"{dropped} log lines were dropped: the log file {self.path} could not be written"
        notice = logging.makeLogRecord(
            {"name": "caxton.observability", "levelno": logging.WARNING, "msg": text}
        )
        notice.levelname = "WARNING"
        notice.created, notice.msecs = record.created, record.msecs
        if self.stream is not None and _ends_mid_line(self.path):
            with contextlib.suppress(Exception):  # a failure shows in the emit below
                self.stream.write(self.terminator)  # after the line a full disk cut short
        super().emit(notice)
        if self._failed:
            self.dropped = dropped  # the notice is not one of the log's lines
            return False
        self.dropped = 0
        self._reported.clear()
        _stderr(f"caxton: the log file {self.path} is written again; {dropped} lines were dropped")
        return True

    def _open(self) -> TextIOWrapper:
        # The directory may have been removed under a running node; recreate it.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return super()._open()

    def rotated_files(self) -> list[Path]:
        """Rotated files of this log in the directory, oldest period first."""
        return sorted(
            (p for p in self.path.parent.iterdir() if rotated_file_date(self.path, p) is not None),
            key=lambda p: p.name,
        )

    def _maybe_rotate(self) -> None:
        if self.rotation == "never":
            return
        now = self._clock.now()
        period = period_suffix(now, self.rotation)
        if period == self._period:
            return
        closed_period, self._period = self._period, period
        if self.stream is not None:
            self.stream.close()
            self.stream = None  # emit() opens the next file
        self._rename_active(closed_period)
        self._prune(now)

    def _rotate_leftover(self, now: datetime) -> None:
        """Rotate an active file that holds lines from an earlier period than `now`'s."""
        if self.rotation == "never":
            return
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return
        if stat.st_size == 0:
            return
        written = datetime.fromtimestamp(stat.st_mtime).astimezone()
        period = period_suffix(written, self.rotation)
        if period != self._period:
            self._rename_active(period)

    def _rename_active(self, period: str) -> None:
        if not self.path.exists():
            return
        target = self.path.with_name(f"{self.path.name}.{period}")
        serial = 0
        while target.exists():
            serial += 1
            target = self.path.with_name(f"{self.path.name}.{period}.{serial}")
        os.replace(self.path, target)

    def _prune(self, now: datetime) -> None:
        if self.retention_days <= 0:
            return
        oldest_kept = _local(now).date() - timedelta(days=self.retention_days)
        for candidate in self.rotated_files():
            day = rotated_file_date(self.path, candidate)
            if day is not None and day < oldest_kept:
                candidate.unlink(missing_ok=True)

    def _prune_quietly(self, now: datetime) -> None:
        try:
            self._prune(now)
        except OSError:
            self._tell()
