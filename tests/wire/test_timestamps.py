"""The one RFC 3339 formatter: UTC, milliseconds, ``Z``, for messages, the API and logs."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from caxton.wire.envelope import Incoming, Stamper
from caxton.wire.timestamps import now_rfc3339, rfc3339, rfc3339_ms

RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def _by_datetime(seconds: float) -> str:
    """What the node wrote before there was one formatter (`datetime`, ms truncated)."""
    stamp = datetime.fromtimestamp(seconds, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def test_the_documented_shape() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339_ms(1_746_100_800_250) == "2025-05-01T12:00:00.250Z"
    moment = datetime(2024, 5, 1, 12, 30, 0, 123456, tzinfo=UTC)
    assert rfc3339(moment.timestamp()) == "2024-05-01T12:30:00.123Z"  # truncated, not .122


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_the_same_text_as_datetime(seconds: float) -> None:
    assert rfc3339(seconds) == _by_datetime(seconds)


def test_consecutive_seconds_and_going_back_in_time() -> None:
    """The cached second is replaced whenever the second changes, in either direction."""
    assert rfc3339_ms(59_999) == "1970-01-01T00:00:59.999Z"
    assert rfc3339_ms(60_000) == "1970-01-01T00:01:00.000Z"
    assert rfc3339_ms(59_000) == "1970-01-01T00:00:59.000Z"
    assert rfc3339_ms(59_001) == "1970-01-01T00:00:59.001Z"


def test_threads_never_mix_one_second_with_another() -> None:
    """Worker threads stamp messages while the event loop formats API times."""
    bad: list[tuple[int, str]] = []

    def run(base: int) -> None:
        for i in range(20_000):
            ms = base + (i % 7) * 1000 + i % 1000
            text = rfc3339_ms(ms)
            if text != _by_datetime(ms / 1000):
                bad.append((ms, text))

    threads = [threading.Thread(target=run, args=(base,)) for base in (0, 86_400_000, 10**12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert bad == []


def test_now_and_the_created_at_of_messages() -> None:
    before = time.time()
    now = now_rfc3339()
    _, out = Stamper().stamp(b'{"receiver":"b","performative":"inform"}', b'"a"', Incoming(None))
    after = time.time()
    created_at = json.loads(out)["created_at"]
    for text in (now, created_at):
        assert RFC3339_MS.fullmatch(text)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        assert before - 0.001 <= parsed <= after
