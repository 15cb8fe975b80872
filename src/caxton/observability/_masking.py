"""`SecretMasker`: a logging filter that keeps registered secrets out of every log line."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from caxton.config import Secret
from caxton.observability._formatters import context_fields

__all__ = ["MASK", "SecretMasker"]

MASK = "********"

# Secrets shorter than this are not registered: masking "a" or "1" would shred every line and
# such a value is no secret anyway.
_MIN_SECRET_LENGTH = 4


class SecretMasker(logging.Filter):
    """Replaces every registered secret value with ``'********'``.

    It rewrites the record in place before any formatter sees it: the formatted message (the
    ``%``-arguments are merged in first, so a secret passed as an argument is caught too), every
    string inside the context fields (nested dicts and lists included) and the formatted traceback.
    It is installed on Caxton's handlers, so it applies to records from every logger.

    `register_secret` may be called at any time from any thread; later records are masked.
    The filter never rejects a record and never raises: a record it cannot rewrite is passed on
    unchanged rather than lost.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def register_secret(self, value: str | Secret | None) -> None:
        """Mask `value` from now on (a `Secret` is revealed for this; None and short values are
        ignored)."""
        text = value.reveal() if isinstance(value, Secret) else value
        if not text or len(text) < _MIN_SECRET_LENGTH:
            return
        with self._lock:
            if text not in self._secrets:
                # Longest first, so a secret that contains another one is masked whole.
                self._secrets = tuple(sorted({*self._secrets, text}, key=len, reverse=True))

    @property
    def secret_count(self) -> int:
        """How many distinct secrets are registered."""
        return len(self._secrets)

    def mask(self, text: str) -> str:
        """`text` with every registered secret replaced by the mask."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def _mask_value(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, Secret):
            return MASK
        if depth >= 8:
            return value
        if isinstance(value, dict):
            return {
                self._mask_value(k, depth + 1): self._mask_value(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._mask_value(v, depth + 1) for v in value]
        if isinstance(value, tuple):
            return tuple(self._mask_value(v, depth + 1) for v in value)
        if value is None or isinstance(value, bool | int | float):
            return value
        # Any other object is written as its str() later: mask that text if it needs masking.
        text = str(value)
        masked = self.mask(text)
        return value if masked == text else masked

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        with contextlib.suppress(Exception):  # never lose a record because masking failed
            self._rewrite(record)
        return True

    def _rewrite(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = None  # the formatter reports the mismatch; mask the parts we have
        if message is not None:
            record.msg, record.args = self.mask(message), None
        elif isinstance(record.msg, str):
            record.msg = self.mask(record.msg)
        for key, value in context_fields(record).items():
            setattr(record, key, self._mask_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
