"""Durations and sizes as operators write them: ``"200ms"``, ``"1h30m"``, ``"512MB"``.

Durations become float seconds and sizes int bytes. Size units are always *binary*:
``KB`` = ``KiB`` = 1024 bytes, ``MB`` = ``MiB`` = 1024², ``GB`` = ``GiB`` = 1024³,
``TB`` = ``TiB`` = 1024⁴ (what the seed means by ``wasm_memory_limit = "512MB"``).

The ``format_*`` functions are the inverse: ``parse_duration(format_duration(x)) == x`` and
``parse_size(format_size(n)) == n`` for every value the parsers can return.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

__all__ = ["format_duration", "format_size", "parse_duration", "parse_size"]

# ASCII digits only: `\d` would also take "٣", which `float` reads as 3.
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"

# Longest unit first, so that "ms" is not read as "m" followed by garbage.
_DURATION_UNITS: dict[str, int] = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_PART = re.compile(rf"({_NUMBER})(ms|d|h|m|s)")
_BARE_NUMBER = re.compile(_NUMBER)

_SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1024,
    "kib": 1024,
    "mb": 1024**2,
    "mib": 1024**2,
    "gb": 1024**3,
    "gib": 1024**3,
    "tb": 1024**4,
    "tib": 1024**4,
}
_SIZE = re.compile(rf"({_NUMBER})\s*([a-zA-Z]*)")
# Rendering order for format_size: the largest unit that divides the value exactly.
_SIZE_NAMES = (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("KB", 1024))

_DURATION_HINT = 'expected a duration such as "30s", "200ms", "5m", "1h30m" or a number of seconds'
_SIZE_HINT = 'expected a size such as "512MB", "64KB", "1GB" or a number of bytes'


def toml_repr(value: object) -> str:
    """A value as the operator wrote it in TOML (strings quoted, booleans lower-case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def parse_duration(text: str | int | float) -> float:
    """Read a duration and return it in seconds.

    Accepts a number of seconds (``30``, ``1.5``, ``"30"``) or one or more ``<number><unit>``
    parts with units ``ms``, ``s``, ``m``, ``h``, ``d``, largest first and each at most once
    (``"1h30m"``, ``"1.5s"``, ``"200ms"``).

    Raises:
        ValueError: the text is not a duration, or it is negative, infinite or NaN; the
            message says what was expected and what was given.
    """
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"{_DURATION_HINT}, got {toml_repr(text)}")
    if not isinstance(text, str):
        seconds = float(text)
        if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
            raise ValueError(f"{_DURATION_HINT} (not negative or infinite), got {text!r}")
        return seconds
    body = text.strip()
    if _BARE_NUMBER.fullmatch(body) and not math.isinf(float(body)):
        return float(body)
    total = 0.0
    position = 0
    previous_rank = -1
    ranks = ("d", "h", "m", "s", "ms")
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None:
            raise ValueError(f"{_DURATION_HINT}, got {toml_repr(text)}")
        number, unit = match.groups()
        rank = ranks.index(unit)
        if rank <= previous_rank:
            raise ValueError(
                f"{_DURATION_HINT} (units largest first, each once), got {toml_repr(text)}"
            )
        previous_rank = rank
        # Milliseconds divide so that "200ms" is exactly 0.2, matching format_duration.
        total += float(number) / 1000 if unit == "ms" else float(number) * _DURATION_UNITS[unit]
        position = match.end()
    if position == 0 or math.isinf(total):
        raise ValueError(f"{_DURATION_HINT}, got {toml_repr(text)}")
    return total


def parse_size(text: str | int) -> int:
    """Read a size and return it in bytes.

    Accepts a whole number of bytes (``1024``, ``"1024"``) or ``<number><unit>`` with a binary
    unit, case-insensitive: ``B``, ``KB``/``KiB``, ``MB``/``MiB``, ``GB``/``GiB``, ``TB``/``TiB``
    (``"1.5GB"`` is 1.5 × 1024³). A fraction of a byte is rounded down.

    Raises:
        ValueError: the text is not a size or is negative; the message says what was expected.
    """
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f"{_SIZE_HINT}, got {toml_repr(text)}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"{_SIZE_HINT} (not negative), got {text}")
        return text
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{_SIZE_HINT}, got {toml_repr(text)}")
    number, unit = match.groups()
    if unit == "":
        if "." in number:
            raise ValueError(f"{_SIZE_HINT} (a whole number of bytes), got {toml_repr(text)}")
        return int(number)
    multiplier = _SIZE_UNITS.get(unit.lower())
    if multiplier is None:
        units = "units B, KB, MB, GB, TB or KiB..TiB"
        raise ValueError(f"{_SIZE_HINT} ({units}), got {toml_repr(text)}")
    # Fraction keeps "1.5GB" exact where a float product could be off by one byte.
    return math.floor(Fraction(number) * multiplier)


def format_duration(seconds: float) -> str:
    """Render seconds the way an operator would write them (``"30s"``, ``"200ms"``, ``"1h30m"``).

    Whole seconds become compound ``d``/``h``/``m``/``s`` parts, whole milliseconds ``"<n>ms"``,
    anything else the exact decimal with ``s``. Raises ValueError for negative or non-finite
    input.
    """
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"cannot render {seconds!r} as a duration")
    seconds = float(seconds)
    if seconds == 0:
        return "0s"
    if seconds.is_integer() and seconds < 2**53:
        remaining = int(seconds)
        parts = []
        for unit, size in _DURATION_UNITS.items():
            count, remaining = divmod(remaining, size)
            if count:
                parts.append(f"{count}{unit}")
        return "".join(parts)
    scaled = seconds * 1000
    if math.isfinite(scaled) and round(scaled) / 1000 == seconds:
        return f"{round(scaled)}ms"
    # Positional (never exponent) form of the shortest repr, which float() reads back exactly.
    return format(Decimal(repr(seconds)), "f") + "s"


def format_size(size: int) -> str:
    """Render bytes with the largest binary unit that divides them (``"512MB"``, ``"1000B"``)."""
    if size < 0:
        raise ValueError(f"cannot render {size!r} as a size")
    for name, unit in _SIZE_NAMES:
        if size and size % unit == 0:
            return f"{size // unit}{name}"
    return f"{size}B"
