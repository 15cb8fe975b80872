"""`configure_logging`: Caxton's logs as JSON or text lines, to stderr or a rotating file.

Caxton logs through the standard library: every module uses ``logging.getLogger(__name__)``
under the ``caxton`` logger, with context passed as ``extra={...}``. This module installs the one
handler that writes those records:

* ``log_level`` sets the level of the ``caxton`` logger. Other libraries' loggers (aiohttp,
  asyncio, opentelemetry) go through the same handler, but only from ``warning`` up (or from
  ``log_level`` when that is higher), so ``debug`` shows Caxton's detail, not asyncio's.
* ``log_format`` picks `JsonFormatter` (one object per line) or `TextFormatter`.
* ``log_file`` unset: the lines go to stderr (or the given stream). Set: to that file, rotated
  ``daily``/``hourly``/``never`` with ``log_retention_days`` retention (see `_rotation`).
* A `SecretMasker` sits on the handler, so registered secrets never reach a log line.

Calling `configure_logging` again replaces the handler it installed before (the new
configuration wins, nothing is written twice); `LoggingSetup.close` removes it and restores the
logger levels found before the first call. Handlers others installed (pytest's, an embedding
application's) are left alone.

Failure: a bad ``log_level`` or a log file that cannot be created raises `ConfigError` at
configuration time. Once running, a record that cannot be formatted or written is reported
through `logging.Handler.handleError` and never raises into the code that logged it.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from caxton.clock import SYSTEM_CLOCK, Clock
from caxton.config import ObservabilityConfig, Secret
from caxton.errors import ConfigError
from caxton.observability._formatters import JsonFormatter, TextFormatter
from caxton.observability._masking import SecretMasker
from caxton.observability._rotation import RotatingLogFileHandler
from caxton.observability._tracefields import TraceFields

__all__ = ["LOG_LEVELS", "LoggingSetup", "SecretMasker", "configure_logging", "parse_log_level"]

#: The accepted ``log_level`` spellings (compared lower-case).
LOG_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

CAXTON_LOGGER = "caxton"

_lock = threading.Lock()
_active: LoggingSetup | None = None


def parse_log_level(name: str) -> int:
    """The `logging` level for a ``log_level`` value; `ConfigError` names the accepted ones."""
    level = LOG_LEVELS.get(name.strip().lower())
    if level is None:
        accepted = ", ".join(LOG_LEVELS)
        raise ConfigError(
            f"observability.log_level: unknown level {name!r} (expected one of {accepted})",
            details={"key": "observability.log_level", "value": name},
        )
    return level


@dataclass(frozen=True, slots=True)
class _SavedLevels:
    root: int
    caxton: int


@dataclass(eq=False)
class LoggingSetup:
    """What `configure_logging` installed; `close()` takes it away again (idempotent)."""

    #: The handler on the root logger that writes every line.
    handler: logging.Handler
    #: The filter that masks secrets; `register_secret` adds to it.
    masker: SecretMasker
    #: The level of the ``caxton`` logger.
    level: int
    #: The active log file, or None when writing to a stream.
    log_file: Path | None
    _saved: _SavedLevels = field(repr=False)
    _closed: bool = field(default=False, repr=False)

    def register_secret(self, value: str | Secret | None) -> None:
        """Mask `value` in every later log line (see `SecretMasker.register_secret`)."""
        self.masker.register_secret(value)

    def close(self) -> None:
        """Remove the handler, close its file and restore the logger levels found before."""
        global _active
        with _lock:
            if self._closed:
                return
            self._closed = True
            _detach(self.handler)
            if _active is self:
                logging.getLogger().setLevel(self._saved.root)
                logging.getLogger(CAXTON_LOGGER).setLevel(self._saved.caxton)
                _active = None


def _detach(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    try:
        handler.close()
    except Exception:  # closing a broken stream must not fail a shutdown
        handler.handleError(logging.makeLogRecord({"msg": "closing the log handler failed"}))


def _open_file(config: ObservabilityConfig, path: Path, clock: Clock) -> logging.Handler:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return RotatingLogFileHandler(
            path,
            rotation=config.log_rotation,
            retention_days=config.log_retention_days,
            clock=clock,
        )
    except OSError as exc:
        raise ConfigError(
            f"observability.log_file: cannot open {str(path)!r}: {exc.strerror or exc}",
            details={"key": "observability.log_file", "value": str(path)},
        ) from exc


def configure_logging(
    config: ObservabilityConfig,
    *,
    clock: Clock = SYSTEM_CLOCK,
    stream: TextIO | None = None,
    masker: SecretMasker | None = None,
) -> LoggingSetup:
    """Install Caxton's log handler as `config` says (see the module docstring).

    Args:
        config: the ``[observability]`` section.
        clock: local time for file rotation (tests inject one); the real clock by default.
        stream: where lines go when ``log_file`` is unset; ``sys.stderr`` by default.
        masker: a `SecretMasker` to keep using (secrets registered on it stay masked); by
            default the previous setup's masker, or a new one.

    Raises:
        ConfigError: ``log_level`` is unknown, or ``log_file`` cannot be created or opened.
    """
    global _active
    level = parse_log_level(config.log_level)
    handler: logging.Handler
    if config.log_file is not None:
        handler = _open_file(config, Path(config.log_file), clock)
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if config.log_format == "json" else TextFormatter())

    root = logging.getLogger()
    caxton = logging.getLogger(CAXTON_LOGGER)
    with _lock:
        previous = _active
        if previous is not None:
            saved = previous._saved
            previous._closed = True
            _detach(previous.handler)
        else:
            saved = _SavedLevels(root=root.level, caxton=caxton.level)
        chosen = masker or (previous.masker if previous is not None else SecretMasker())
        handler.addFilter(TraceFields())  # before the masker: it masks what this adds too
        handler.addFilter(chosen)
        root.addHandler(handler)
        root.setLevel(max(level, logging.WARNING))
        caxton.setLevel(level)
        setup = LoggingSetup(
            handler=handler,
            masker=chosen,
            level=level,
            log_file=config.log_file,
            _saved=saved,
        )
        _active = setup
    return setup
