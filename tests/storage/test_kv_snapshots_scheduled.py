"""The kv, snapshot and timer repositories."""

from __future__ import annotations

import asyncio
import os
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caxton.errors import StorageError
from caxton.storage import Storage, snapshots


async def test_kv_set_get_delete_and_load(storage: Storage, agent: str) -> None:
    def worker() -> dict[bytes, bytes]:
        storage.kv.set_nowait(agent, b"a", b"1")
        storage.kv.set_nowait(agent, b"b", b"2")
        storage.kv.set_nowait(agent, b"a", b"3")  # overwrites, in order
        existed = storage.kv.delete_nowait(agent, b"b")
        missing = storage.kv.delete_nowait(agent, b"zzz")
        assert existed.result(5) is True
        assert missing.result(5) is False
        return storage.kv.load_sync(agent)

    assert await asyncio.to_thread(worker) == {b"a": b"3"}
    assert await storage.kv.get(agent, b"a") == b"3"
    assert await storage.kv.get(agent, b"b") is None
    assert await storage.kv.get("someone-else", b"a") is None


async def test_kv_clear_drops_every_pair_of_one_agent(storage: Storage, agent: str) -> None:
    for i in range(10):
        storage.kv.set_nowait(agent, b"%d" % i, b"v")
    assert storage.kv.clear_nowait(agent).result(5) == 10
    assert await storage.kv.load(agent) == {}


async def test_kv_binary_keys_and_values_round_trip(storage: Storage, agent: str) -> None:
    key, value = bytes(range(256)), os.urandom(100_000)
    storage.kv.set_nowait(agent, key, value).result(5)
    assert await storage.kv.load(agent) == {key: value}


async def test_kv_for_an_unknown_agent_fails_its_future(storage: Storage) -> None:
    with pytest.raises(StorageError):
        storage.kv.set_nowait("ghost", b"k", b"v").result(5)


async def test_snapshots_round_trip_compressed(storage: Storage, agent: str) -> None:
    memory = bytearray(1 << 20)
    memory[1000:1016] = b"live data here!!"
    await storage.snapshots.save(agent, bytes(memory), {"pages": 16, "globals": [1, 2]})
    stored = await storage.read(
        lambda c: c.fetch_value("SELECT length(memory) FROM snapshots WHERE name = ?", (agent,))
    )
    assert stored < 10_000  # a mostly-empty 1 MiB memory is stored small
    assert await storage.snapshots.load(agent) == (bytes(memory), {"pages": 16, "globals": [1, 2]})
    assert await storage.snapshots.delete(agent) is True
    assert await storage.snapshots.load(agent) is None
    assert await storage.snapshots.delete(agent) is False


async def test_snapshot_sync_twins_replace_the_previous_snapshot(
    storage: Storage, agent: str
) -> None:
    def worker() -> tuple[bytes, dict[str, object]] | None:
        storage.snapshots.save_sync(agent, b"first", {"n": 1})
        storage.snapshots.save_sync(agent, b"second", {"n": 2})
        return storage.snapshots.load_sync(agent)

    assert await asyncio.to_thread(worker) == (b"second", {"n": 2})
    assert await asyncio.to_thread(storage.snapshots.delete_sync, agent) is True


@pytest.mark.parametrize(
    ("kind", "memory"),
    [
        pytest.param("random", os.urandom(1 << 20), id="random-1MiB"),
        pytest.param("mostly-zero", bytes((1 << 20) - 4096) + os.urandom(4096), id="zero-1MiB"),
    ],
)
def test_snapshot_save_and_load_of_one_mebibyte_is_fast(
    state_path: Path, kind: str, memory: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = Storage.open_sync(state_path)
    try:
        storage.write_sync(
            lambda c: c.execute(
                "INSERT INTO agents(name, state, current_version, created_at, updated_at)"
                " VALUES ('m', 'stopped', 1, 0, 0)"
            )
        )
        started = time.perf_counter()
        storage.snapshots.save_sync("m", memory, {})
        saved = time.perf_counter()
        assert storage.snapshots.load_sync("m") == (memory, {})
        loaded = time.perf_counter()
        size = storage.read_sync(lambda c: c.fetch_value("SELECT length(memory) FROM snapshots"))
    finally:
        storage.close()
    with capsys.disabled():
        print(
            f"\n  snapshot {kind} 1 MiB: stored {size} bytes,"
            f" save {1000 * (saved - started):.1f} ms, load {1000 * (loaded - saved):.1f} ms"
        )
    assert loaded - started < 1.0


async def test_timers_are_listed_when_due_and_deleted(storage: Storage, agent: str) -> None:
    now = time.time()
    late = await storage.scheduled.add(agent, now + 60, b"late")
    soon = await storage.scheduled.add(agent, now - 1, b"soon")
    from_thread = await asyncio.to_thread(
        lambda: storage.scheduled.add_nowait(agent, now - 2, b"sooner").result(5)
    )
    due = await storage.scheduled.list_due(now)
    assert [(t.id, t.body) for t in due] == [(from_thread, b"sooner"), (soon, b"soon")]
    assert [t.id for t in await storage.scheduled.list_due(now, limit=1)] == [from_thread]
    assert [t.id for t in await storage.scheduled.list_all()] == [from_thread, soon, late]
    assert [t.id for t in await storage.scheduled.list_all(agent)] == [from_thread, soon, late]
    assert await storage.scheduled.next_due_at() == pytest.approx(now - 2)
    assert await storage.scheduled.delete(soon) is True
    assert await storage.scheduled.delete(soon) is False
    assert storage.scheduled.delete_nowait(from_thread).result(5) is True
    assert [t.id for t in await storage.scheduled.list_all()] == [late]


async def test_timers_survive_a_restart(storage: Storage, agent: str) -> None:
    timer = await storage.scheduled.add(agent, 123.0, b"tick")
    await storage.aclose()
    async with await Storage.open(storage.path) as reopened:
        [record] = await reopened.scheduled.list_all()
    assert (record.id, record.name, record.due_at, record.body) == (timer, agent, 123.0, b"tick")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.binary(min_size=1, max_size=300)), max_size=8),
    st.integers(0, 40 * 65536 + 17),
)
def test_snapshot_packing_round_trips_any_memory(
    writes: list[tuple[int, bytes]], size: int
) -> None:
    memory = bytearray(size)
    for page, data in writes:
        start = min(page * 65536, size)
        memory[start : start + len(data)] = data[: max(0, size - start)]
    memory = memory[:size]
    packed = snapshots.pack(bytes(memory))
    assert snapshots.unpack(packed) == bytes(memory)
    pages = range((size + 65535) // 65536)
    nonzero_pages = [p for p in pages if memory[p * 65536 : (p + 1) * 65536].strip(b"\0")]
    sparse = snapshots.unpack_sparse(packed)  # what a restore writes back: non-zero pages only
    assert (sparse.size, sorted(sparse.pages)) == (size, nonzero_pages)
    assert sparse.to_bytes() == bytes(memory)
    assert snapshots.pack(sparse) == packed
    # zlib adds at most a few bytes per 16 KiB over the kept pages
    assert len(packed) <= 9 + (size // 65536 + 8) // 8 + len(nonzero_pages) * 65600 + 64


def test_old_zlib_snapshots_still_load() -> None:
    memory = bytes(70000) + b"state"
    assert snapshots.unpack(zlib.compress(memory, 1)) == memory
