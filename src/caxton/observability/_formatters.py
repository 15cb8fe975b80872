"""Log record formatters: one JSON object per line, or one readable text line.

Both formatters put the *context* of a record (every field a caller passed through
``logger.info("...", extra={...})``) next to the message, so a log line carries the agent name,
message id or peer address it is about. Neither formatter raises: a value that JSON cannot encode
is written as its ``str()``, a value whose ``str()`` fails is written as ``<unprintable T>``, and a
record whose ``%``-arguments do not fit its message is written with the raw message and a
``format_error`` field instead of being lost.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from caxton.wire.timestamps import rfc3339

__all__ = ["JsonFormatter", "TextFormatter", "context_fields"]

# Attributes every LogRecord has (plus those the stdlib adds while formatting). Whatever else is
# in ``record.__dict__`` came from ``extra=`` and is context.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

# Nested containers deeper than this are written as their str(), which also ends recursion on
# self-referencing structures.
_MAX_DEPTH = 8


def context_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller attached with ``extra=``, in the order they were given."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD_ATTRS and not key.startswith("_")
    }


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def jsonable(value: object, depth: int = 0) -> Any:
    """`value` as something `json.dumps` always accepts (str() for anything else)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _safe_str(value)
    if depth >= _MAX_DEPTH:
        return _safe_str(value)
    if isinstance(value, dict):
        return {_safe_str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, depth + 1) for v in value]
    return _safe_str(value)


def _message(record: logging.LogRecord) -> tuple[str, str | None]:
    """The formatted message, and an error text when the ``%``-arguments did not fit."""
    try:
        return record.getMessage(), None
    except Exception as exc:
        return _safe_str(record.msg), f"{type(exc).__name__}: {_safe_str(exc)}"


class _BaseFormatter(logging.Formatter):
    def exception_text(self, record: logging.LogRecord) -> str | None:
        """The formatted traceback (cached on the record like the stdlib does), or None."""
        if record.exc_info and not record.exc_text:
            try:
                record.exc_text = self.formatException(record.exc_info)
            except Exception as exc:
                record.exc_text = f"<traceback unavailable: {_safe_str(exc)}>"
        return record.exc_text or None


class JsonFormatter(_BaseFormatter):
    """One JSON object per line.

    Keys: ``time`` (RFC 3339 UTC with milliseconds), ``level`` (lower case), ``logger``,
    ``message``, then every context field at top level, then ``exception`` (the formatted
    traceback) and ``stack`` when present. A context field named like one of those keys is
    written with a ``ctx_`` prefix so it cannot hide them.
    """

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception as exc:  # last resort: still one valid JSON line
            return json.dumps(
                {
                    "time": rfc3339(getattr(record, "created", 0.0)),
                    "level": "error",
                    "logger": "caxton.observability",
                    "message": _safe_str(getattr(record, "msg", "")),
                    "format_error": _safe_str(exc),
                }
            )

    def _format(self, record: logging.LogRecord) -> str:
        message, error = _message(record)
        payload: dict[str, Any] = {
            "time": rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        for key, value in context_fields(record).items():
            name = f"ctx_{key}" if key in payload or key in ("exception", "stack") else key
            payload[name] = jsonable(value)
        if error is not None:
            payload["format_error"] = error
        exception = self.exception_text(record)
        if exception:
            payload["exception"] = exception
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return json.dumps(payload, ensure_ascii=False)


def _text_value(value: object) -> str:
    text = _safe_str(value) if not isinstance(value, dict | list | tuple) else _json_text(value)
    if text and not any(c.isspace() or c in '"=' for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _json_text(value: object) -> str:
    return json.dumps(jsonable(value), ensure_ascii=False)


class TextFormatter(_BaseFormatter):
    """``2024-05-01T12:30:00.123Z INFO    caxton.runtime: agent started agent=echo version=3``.

    Context follows the message as ``key=value``; values with spaces, quotes or ``=`` are
    JSON-quoted so the line stays machine-splittable. A traceback, when present, follows on the
    next lines (the only case where a record spans more than one line).
    """

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception as exc:
            return f"<log record could not be formatted: {_safe_str(exc)}>"

    def _format(self, record: logging.LogRecord) -> str:
        message, error = _message(record)
        parts = [
            rfc3339(record.created),
            f"{record.levelname:<7}",
            f"{record.name}:",
            message.replace("\n", "\\n"),
        ]
        context = context_fields(record)
        if error is not None:
            context["format_error"] = error
        parts.extend(f"{key}={_text_value(value)}" for key, value in context.items())
        line = " ".join(parts)
        exception = self.exception_text(record)
        if exception:
            line = f"{line}\n{exception}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line
