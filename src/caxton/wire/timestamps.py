"""RFC 3339 timestamps as Caxton writes them: UTC, milliseconds, ``Z``.

``2025-05-01T12:00:00.000Z``, the one formatter of the node: message ``created_at``
(`caxton.wire.envelope`), the times of the HTTP API (docs/api.md: agents, logs, dead letters,
event heartbeats) and log records (docs/observability.md) all come from here.

`rfc3339_ms` is the hot path's: it keeps the formatted second (``2025-05-01T12:00:00``) and
only adds the milliseconds (from a table of the 1,000 tails) while the second stays the same,
so a new millisecond costs one concatenation instead of a ``strftime`` (~10x more than the rest
of stamping a message). `rfc3339_ms_json` is the same text as a JSON string, as the envelope
splices it into ``created_at`` (and caches per millisecond on top). The cache is one tuple
swapped in one assignment, so threads that format at the same time never pair a second with
another second's text.
"""

from __future__ import annotations

import math
import time

__all__ = ["now_rfc3339", "rfc3339", "rfc3339_ms", "rfc3339_ms_json"]

#: (Unix second, its ``YYYY-MM-DDTHH:MM:SS`` in UTC, the same as the head of a JSON string) of
#: the last second formatted.
_second: tuple[int, str, bytes] = (-1, "", b"")
#: The tail for each millisecond: ``.mmmZ``, and ``.mmmZ"`` to close a JSON string.
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))
_MILLIS_JSON = tuple(b'.%03dZ"' % ms for ms in range(1000))


def _format_second(second: int) -> tuple[int, str, bytes]:
    global _second
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    cached = _second = (second, text, b'"' + text.encode())
    return cached


def rfc3339_ms(ms: int) -> str:
    """Unix milliseconds as RFC 3339 in UTC with milliseconds (``2025-05-01T12:00:00.000Z``)."""
    second, frac = divmod(ms, 1000)
    cached = _second
    if cached[0] != second:
        cached = _format_second(second)
    return cached[1] + _MILLIS[frac]


def rfc3339_ms_json(ms: int) -> bytes:
    """`rfc3339_ms` as a JSON string (``b'"2025-05-01T12:00:00.000Z"'``)."""
    second, frac = divmod(ms, 1000)
    cached = _second
    if cached[0] != second:
        cached = _format_second(second)
    return cached[2] + _MILLIS_JSON[frac]


def rfc3339(seconds: float) -> str:
    """Unix seconds as RFC 3339 in UTC, milliseconds truncated (``2025-05-01T12:00:00.123Z``).

    Rounded to the microsecond first, as `datetime.fromtimestamp` does: ``x.123`` is not
    exactly representable and must not print as ``.122``.
    """
    whole = math.floor(seconds)
    micros = round((seconds - whole) * 1_000_000)
    return rfc3339_ms(whole * 1000 + micros // 1000)


def now_rfc3339() -> str:
    """The current time (`time.time`), formatted by `rfc3339_ms`."""
    return rfc3339_ms(int(time.time() * 1000))
