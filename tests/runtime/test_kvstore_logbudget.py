"""`AgentKv` (quota, cache) and `LogBudget` (rates, burst, summaries) on their own."""

from __future__ import annotations

import logging

import pytest

from caxton.clock import ManualClock
from caxton.runtime import MemoryKv, abi
from caxton.runtime.sandbox.kvstore import ENTRY_OVERHEAD, AgentKv
from caxton.runtime.sandbox.logbudget import LogBudget


def _kv(backend: MemoryKv, **limits: int) -> AgentKv:
    settings = {"max_keys": 3, "max_bytes": 100, "cache_size": 1 << 20, **limits}
    return AgentKv("a", backend, **settings)


def test_overwrites_and_deletes_count_against_the_quota_by_their_difference() -> None:
    backend = MemoryKv()
    kv = _kv(backend)
    assert [kv.set(k, b"x" * 10) for k in (b"k1", b"k2", b"k3")] == [abi.OK] * 3
    assert kv.set(b"k4", b"x") == abi.ERR_QUOTA  # a fourth key
    assert kv.set(b"k1", b"y" * 50) == abi.OK  # replacing a key is no new key
    assert kv.usage() == (3, 2 + 50 + 2 * 12)
    assert kv.set(b"k2", b"y" * 60) == abi.ERR_QUOTA  # 136 bytes > 100
    assert backend.data["a"][b"k2"] == b"x" * 10  # nothing kept
    assert kv.delete(b"k3")
    assert kv.set(b"k4", b"z") == abi.OK
    assert kv.usage() == (3, 52 + 12 + 3)


def test_a_store_over_its_quota_may_still_shrink() -> None:
    backend = MemoryKv()
    backend.data["a"] = {b"big": b"x" * 500}  # stored before the quota was lowered
    kv = _kv(backend)
    assert kv.set(b"big", b"x" * 400) == abi.OK  # still over, but smaller
    assert kv.set(b"big", b"x" * 450) == abi.ERR_QUOTA
    assert kv.get(b"big") == b"x" * 400


def test_the_cache_stays_within_its_size_and_reads_the_backend_on_a_miss() -> None:
    backend = MemoryKv()
    kv = _kv(backend, max_keys=1000, max_bytes=1 << 20, cache_size=10 * (ENTRY_OVERHEAD + 12))
    for i in range(100):
        assert kv.set(f"key-{i:04d}".encode(), b"v" * 4) == abi.OK
    assert kv.cached_bytes <= 10 * (ENTRY_OVERHEAD + 12)
    assert kv.get(b"key-0000") == b"v" * 4  # evicted long ago: read from the backend
    assert kv.get(b"nope") is None
    kv.clear_cache()
    assert kv.cached_bytes == 0
    assert kv.get(b"key-0099") == b"v" * 4


def test_the_log_budget_allows_a_burst_then_its_rate(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="caxton.agent.a")
    clock = ManualClock(100.0)
    budget = LogBudget("a", bytes_per_second=1000, lines_per_second=10, clock=clock)
    assert sum(budget.admit(10) for _ in range(50)) == 10  # a burst of one second's lines
    clock.advance(0.5)
    assert sum(budget.admit(10) for _ in range(50)) == 5  # then 10 lines per second
    clock.advance(1.0)
    assert budget.admit(900)  # and 1000 bytes per second
    assert not budget.admit(200)
    assert (budget.dropped, budget.dropped_bytes) == (86, 40 * 10 + 45 * 10 + 200)
    # One line per interval: the first drop after an interval reports it ...
    assert [r.getMessage() for r in caplog.records] == [
        "agent a: dropped 85 log lines (850 bytes) in the last 1s: log rate budget"
    ]
    budget.summarise()  # (the interval that began with the last drop has not ended)
    clock.advance(1.0)
    budget.summarise()  # ... and the runtime's ticker reports the last one
    budget.summarise()
    assert [r.getMessage() for r in caplog.records][1:] == [
        "agent a: dropped 1 log lines (200 bytes) in the last 1s: log rate budget"
    ]
