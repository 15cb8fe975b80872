"""The JSON depth bound every message is held to (`caxton.wire.depth`)."""

from __future__ import annotations

import json
import time

import pytest

from caxton.wire.depth import MAX_JSON_DEPTH, too_deep


def _nested(arrays: int) -> bytes:
    """A message whose content nests ``arrays`` arrays (plus the message's own object)."""
    return b'{"receiver":"x","content":' + b"[" * arrays + b"]" * arrays + b"}"


@pytest.mark.parametrize(
    ("data", "deep"),
    [
        (_nested(MAX_JSON_DEPTH - 1), False),  # 100 levels with the object: the most allowed
        (_nested(MAX_JSON_DEPTH), True),
        (_nested(5000), True),
        (b'{"a":' + b"[" * 200 + b"}", True),  # does not balance
        (b'{"a":"' + b"[" * 1000 + b'"}', False),  # brackets in a string do not nest
        (b'{"a":"\\"' + b"[" * 1000 + b'"}', False),  # nor after an escaped quote
        (json.dumps([{"k": i, "v": [i, "[{"]} for i in range(2000)]).encode(), False),
    ],
)
def test_depth(data: bytes, deep: bool) -> None:
    assert too_deep(data) is deep


def test_a_large_document_nesting_just_within_the_bound_is_checked_in_linear_time() -> None:
    """Peeling one level per pass took ~100 passes over such a document (seconds for an HTTP
    body of a few MB, on the event loop; 12 ms for a 10 KB agent message)."""
    unit = b"[" * (MAX_JSON_DEPTH - 2) + b"]" * (MAX_JSON_DEPTH - 2) + b","
    data = b'{"a":[' + unit * (4 * 1024 * 1024 // len(unit)) + b"[]]}"
    started = time.perf_counter()
    assert not too_deep(data)
    assert time.perf_counter() - started < 1.0
