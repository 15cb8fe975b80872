"""Durations and sizes: the spellings of the seed, exact round trips, and garbage refused."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from caxton.config import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("200ms", 0.2),
        ("30s", 30.0),
        ("300s", 300.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s5ms", 93784.005),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("30", 30.0),
        (" 10s ", 10.0),
        (30, 30.0),
        (1.5, 1.5),
        (0, 0.0),
    ],
)
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["30 seconds", "", "s", "ms", "-1s", "1e3s", "5x", "1m1h", "1s1s", "1h 30m", "nan", "inf"],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r'expected a duration such as "30s"'):
        parse_duration(text)


@pytest.mark.parametrize("value", [True, -1, float("nan"), float("inf"), None, [1]])
def test_parse_duration_rejects_non_durations(value: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1MB", 1024**2),
        ("512MB", 512 * 1024**2),
        ("16GB", 16 * 1024**3),
        ("64KB", 64 * 1024),
        ("1KiB", 1024),
        ("1MiB", 1024**2),
        ("2GiB", 2 * 1024**3),
        ("1TB", 1024**4),
        ("1024", 1024),
        ("1.5GB", 1536 * 1024**2),
        ("512mb", 512 * 1024**2),
        ("100B", 100),
        (4096, 4096),
        ("1.3KB", 1331),  # a fraction of a byte is rounded down
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "512 megabytes", "1.5", "-1MB", "1PB", "1e3", "12XB"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r'expected a size such as "512MB"'):
        parse_size(text)


@pytest.mark.parametrize("value", [True, -5, 1.5, None])
def test_parse_size_rejects_non_sizes(value: object) -> None:
    with pytest.raises(ValueError, match="expected a size"):
        parse_size(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(30.0, "30s"), (0.2, "200ms"), (5400.0, "1h30m"), (3600.0, "1h"), (0.0, "0s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"), [(512 * 1024**2, "512MB"), (16 * 1024**3, "16GB"), (1000, "1000B")]
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.floats(min_value=0, allow_infinity=False, allow_nan=False))
def test_duration_round_trip_is_exact(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=10**7), st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_whole_durations_read_back(number: int, unit: str) -> None:
    seconds = parse_duration(f"{number}{unit}")
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=2**62))
def test_size_round_trip_is_exact(size: int) -> None:
    assert parse_size(format_size(size)) == size


@given(st.integers(min_value=0, max_value=2**20), st.sampled_from(["KB", "MB", "GB", "TB"]))
def test_size_units_are_binary(number: int, unit: str) -> None:
    power = ["KB", "MB", "GB", "TB"].index(unit) + 1
    assert parse_size(f"{number}{unit}") == number * 1024**power
    assert parse_size(f"{number}{unit[0]}iB") == number * 1024**power


@given(st.text())
def test_garbage_is_a_value_error_or_a_valid_duration(text: str) -> None:
    """Whatever the text, the parser either returns a finite non-negative float or says why not."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        message = str(exc)
    else:
        assert math.isfinite(seconds)
        assert seconds >= 0
        return
    assert "expected a duration" in message


@given(st.text())
def test_garbage_is_a_value_error_or_a_valid_size(text: str) -> None:
    try:
        size = parse_size(text)
    except ValueError as exc:
        message = str(exc)
    else:
        assert size >= 0
        return
    assert "expected a size" in message


@given(st.text(alphabet="abcxyz XYZ!?-+", min_size=1))
def test_letters_alone_are_never_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)
