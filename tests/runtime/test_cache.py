"""The compiled-module cache: memory, disk, recompiling, and `validate_and_load`."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest
import wasmtime

from caxton.errors import InvalidWasm, ModuleTooLarge
from caxton.runtime.admission.cache import ModuleCache, ModuleCacheStatistics, validate_and_load

MIB = 1024 * 1024
ENGINE = wasmtime.Engine()

AGENT = bytes(
    wasmtime.wat2wasm(
        """(module
          (memory (export "memory") 1)
          (func (export "caxton_alloc") (param i32) (result i32) (i32.const 64))
          (func (export "caxton_handle") (param i32 i32) (result i32)
            (i32.add (local.get 0) (local.get 1))))"""
    )
)


def other_agent(n: int) -> bytes:
    return bytes(
        wasmtime.wat2wasm(
            f"""(module (memory (export "memory") 1)
              (func (export "_start")) (func (export "n") (result i32) (i32.const {n})))"""
        )
    )


def handle(module: wasmtime.Module) -> int:
    """Instantiate and call caxton_handle(40, 2): proves the module really works."""
    store = wasmtime.Store(ENGINE)
    instance = wasmtime.Instance(store, module, [])
    func = instance.exports(store)["caxton_handle"]
    assert isinstance(func, wasmtime.Func)
    result = func(store, 40, 2)
    assert isinstance(result, int)
    return result


def cache_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.cwasm"))


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "modules"


def test_first_load_compiles_and_writes_a_file(cache_dir: Path) -> None:
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k")
    loaded = cache.load(AGENT)
    assert loaded.from_cache == "compiled"
    assert loaded.compile_seconds > 0
    assert len(loaded.sha256) == 64
    assert handle(loaded.module) == 42
    [path] = cache_files(cache_dir)
    assert path.name.startswith(loaded.sha256 + "-")
    assert cache_dir.stat().st_mode & 0o777 == 0o700
    assert not list(cache_dir.glob("*.tmp"))


def test_second_load_is_a_memory_hit_sharing_one_module(cache_dir: Path) -> None:
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k")
    first = cache.load(AGENT)
    second = cache.load(AGENT)
    assert second.from_cache == "memory"
    assert second.module is first.module
    assert second.compile_seconds == 0.0
    assert second.sha256 == first.sha256


def test_new_cache_on_same_directory_loads_from_disk(cache_dir: Path) -> None:
    ModuleCache(ENGINE, cache_dir, settings_key="k").load(AGENT)
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k")
    loaded = cache.load(AGENT)
    assert loaded.from_cache == "disk"
    assert handle(loaded.module) == 42
    stats = cache.statistics()
    assert (stats.compiles, stats.disk_hits, stats.memory_hits) == (0, 1, 0)
    assert cache.load(AGENT).from_cache == "memory"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"garbage" * 10, id="garbage"),
        pytest.param(lambda data: data[: len(data) // 2], id="cut-in-half"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: data[:16] + bytes(16) + data[32:], id="header-zeroed"),
        pytest.param(
            lambda data: data[: len(data) // 2] + b"\xff" + data[len(data) // 2 + 1 :],
            id="byte-in-the-middle",
        ),
        pytest.param(lambda data: data[:-40], id="no-trailer"),
    ],
)
def test_corrupt_file_is_deleted_and_recompiled(cache_dir: Path, damage: object) -> None:
    ModuleCache(ENGINE, cache_dir, settings_key="k").load(AGENT)
    [path] = cache_files(cache_dir)
    good = path.read_bytes()
    assert callable(damage)
    path.write_bytes(damage(good))
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k")
    loaded = cache.load(AGENT)
    assert loaded.from_cache == "compiled"
    assert handle(loaded.module) == 42
    assert cache.statistics().disk_discarded == 1
    assert path.read_bytes() == good  # rewritten
    assert ModuleCache(ENGINE, cache_dir, settings_key="k").load(AGENT).from_cache == "disk"


def test_file_from_another_engine_configuration_is_replaced(cache_dir: Path) -> None:
    config = wasmtime.Config()
    config.consume_fuel = True
    fuel_engine = wasmtime.Engine(config)
    # Same settings_key by mistake: wasmtime notices the incompatible artifact.
    ModuleCache(fuel_engine, cache_dir, settings_key="k").load(AGENT)
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k")
    assert cache.load(AGENT).from_cache == "compiled"
    assert cache.statistics().disk_discarded == 1


def test_different_settings_keys_do_not_share(cache_dir: Path) -> None:
    a = ModuleCache(ENGINE, cache_dir, settings_key="fuel=on")
    b = ModuleCache(ENGINE, cache_dir, settings_key="fuel=off")
    assert a.load(AGENT).from_cache == "compiled"
    assert b.load(AGENT).from_cache == "compiled"
    assert len(cache_files(cache_dir)) == 2
    assert ModuleCache(ENGINE, cache_dir, settings_key="fuel=off").load(AGENT).from_cache == "disk"


def test_memory_only_cache() -> None:
    cache = ModuleCache(ENGINE, None, settings_key="k")
    assert cache.load(AGENT).from_cache == "compiled"
    assert cache.load(AGENT).from_cache == "memory"


def test_compile_failure_is_invalid_wasm(cache_dir: Path) -> None:
    broken = bytes(wasmtime.wat2wasm('(module (func (export "f") (result i32) (i64.const 1)))'))
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k")
    with pytest.raises(InvalidWasm) as info:
        cache.load(broken)
    assert info.value.message.startswith("the module failed to compile: ")
    assert "type mismatch" in info.value.message
    assert "\n" not in info.value.message
    assert info.value.details["reason"] == "compile_error"
    assert "type mismatch" in info.value.details["wasmtime"]
    with pytest.raises(InvalidWasm):
        cache.load(broken)  # failures are not cached as successes
    assert cache.statistics().compiles == 0
    assert cache_files(cache_dir) == []


def test_text_format_is_never_compiled_as_wat(cache_dir: Path) -> None:
    # wasmtime-py would happily treat these bytes as WAT; the cache refuses them first.
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k")
    with pytest.raises(InvalidWasm) as info:
        cache.load(b'(module (memory (export "memory") 1) (func (export "_start")))')
    assert info.value.details["detected"] == "wat"


def test_concurrent_loads_compile_once(cache_dir: Path) -> None:
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k")
    results: list[wasmtime.Module] = []
    barrier = threading.Barrier(8)

    def load() -> None:
        barrier.wait()
        results.append(cache.load(AGENT).module)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(module is results[0] for module in results)
    stats = cache.statistics()
    assert stats.compiles == 1
    assert stats.memory_hits == 7


def test_unused_modules_are_released(cache_dir: Path) -> None:
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k", keep_recent=2)
    kept = cache.load(other_agent(0)).module
    for n in range(1, 5):
        cache.load(other_agent(n))
    gc.collect()
    # kept is alive (referenced here); 3 and 4 are the most recent; 1 and 2 are gone.
    assert cache.statistics().entries == 3
    assert cache.load(other_agent(0)).module is kept
    assert cache.load(other_agent(1)).from_cache == "disk"


def test_clear_forgets_memory_and_disk(cache_dir: Path) -> None:
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k")
    module = cache.load(AGENT).module
    cache.clear()
    assert cache_files(cache_dir) == []
    assert cache.load(AGENT).from_cache == "compiled"
    assert handle(module) == 42  # modules handed out stay usable


def test_unwritable_cache_file_is_not_an_error(cache_dir: Path) -> None:
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k")
    digest_cache = ModuleCache(ENGINE, None, settings_key="k")
    digest = digest_cache.load(AGENT).sha256
    # A directory where the file should go: deserializing and renaming onto it both fail.
    blocker = cache_dir / f"{digest}-{cache._variant}.cwasm"
    blocker.mkdir()
    loaded = cache.load(AGENT)
    assert loaded.from_cache == "compiled"
    stats = cache.statistics()
    assert stats.disk_write_failures == 1
    assert not list(cache_dir.glob(".*.tmp"))


def test_statistics(cache_dir: Path) -> None:
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k")
    cache.load(AGENT)
    cache.load(AGENT)
    stats = cache.statistics()
    assert isinstance(stats, ModuleCacheStatistics)
    assert (stats.memory_hits, stats.disk_hits, stats.compiles, stats.entries) == (1, 0, 1, 1)
    assert stats.compile_seconds_total > 0
    assert stats.disk_load_seconds_total == 0.0


def test_validate_and_load(cache_dir: Path) -> None:
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k")
    loaded, info = validate_and_load(cache, AGENT, max_size=MIB, memory_limit=64 * MIB)
    assert loaded.from_cache == "compiled"
    assert info.kind == "reactor"
    assert info.initial_memory_bytes == 65536


def test_validate_and_load_checks_size_before_compiling(cache_dir: Path) -> None:
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k")
    with pytest.raises(ModuleTooLarge):
        validate_and_load(cache, AGENT, max_size=10, memory_limit=64 * MIB)
    assert cache.statistics().compiles == 0


def test_validate_and_load_inspects_after_loading(cache_dir: Path) -> None:
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k")
    with pytest.raises(InvalidWasm) as info:
        validate_and_load(cache, AGENT, max_size=MIB, memory_limit=1024)
    assert info.value.details["reason"] == "memory_limit"
    assert cache.statistics().compiles == 1


def test_validate_and_load_again_is_a_memory_hit_with_the_same_info(cache_dir: Path) -> None:
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k")
    first, info = validate_and_load(cache, AGENT, max_size=MIB, memory_limit=64 * MIB)
    again, same = validate_and_load(cache, AGENT, max_size=MIB, memory_limit=64 * MIB)
    assert again.from_cache == "memory"
    assert again.module is first.module
    assert same is info
    with pytest.raises(InvalidWasm):  # a lower limit is checked, not taken from memory
        validate_and_load(cache, AGENT, max_size=MIB, memory_limit=1024)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b"(module)", "not_wasm", id="wat"),
        pytest.param(AGENT[:-3], "truncated", id="truncated"),
    ],
)
def test_validate_and_load_refuses_bad_bytes(cache_dir: Path, data: bytes, reason: str) -> None:
    cache = ModuleCache(ENGINE, cache_dir, settings_key="k")
    with pytest.raises(InvalidWasm) as info:
        validate_and_load(cache, data, max_size=MIB, memory_limit=64 * MIB)
    assert info.value.details["reason"] == reason
    assert cache.statistics().compiles == 0
