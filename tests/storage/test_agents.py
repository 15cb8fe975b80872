"""The agents repository: records, versions, modules and their garbage collection."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from caxton.errors import AgentAlreadyExists, AgentNotFound, StorageError
from caxton.storage import AgentRecord, Storage, module_hash

WASM_1 = b"\0asm\x01\0\0\0 one"
WASM_2 = b"\0asm\x01\0\0\0 two"


async def module_count(storage: Storage) -> int:
    return int(await storage.read(lambda c: c.fetch_value("SELECT COUNT(*) FROM modules")))


async def test_create_agent_stores_version_one(storage: Storage) -> None:
    record = await storage.agents.create(
        AgentRecord(
            name="echo",
            state="running",
            env={"MODE": "loud"},
            limits={"memory": 1048576},
            grants={"filesystem": True},
        ),
        WASM_1,
    )
    assert record.name == "echo"
    assert record.state == "running"
    assert record.current_version == 1
    assert record.module_hash == module_hash(WASM_1)
    assert record.env == {"MODE": "loud"}
    assert record.limits == {"memory": 1048576}
    assert record.grants == {"filesystem": True}
    assert record.created_at == record.updated_at > 0
    assert (record.restarts, record.messages_handled, record.failures) == (0, 0, 0)
    assert await storage.agents.get("echo") == record
    assert await storage.agents.get_module(module_hash(WASM_1)) == WASM_1


async def test_create_agent_refuses_a_taken_name(storage: Storage) -> None:
    await storage.agents.create(AgentRecord(name="echo"), WASM_1)
    with pytest.raises(AgentAlreadyExists, match="echo"):
        await storage.agents.create(AgentRecord(name="echo"), WASM_2)
    assert await module_count(storage) == 1  # the failed create stored nothing


async def test_modules_are_stored_once_per_content(storage: Storage) -> None:
    await storage.agents.create(AgentRecord(name="a"), WASM_1)
    await storage.agents.create(AgentRecord(name="b"), WASM_1)
    assert await module_count(storage) == 1


async def test_versions_upgrade_and_roll_back(storage: Storage) -> None:
    await storage.agents.create(AgentRecord(name="echo"), WASM_1)
    assert await storage.agents.add_version("echo", WASM_2) == 2
    assert await storage.agents.load_module_for("echo") == (2, module_hash(WASM_2), WASM_2)
    await storage.agents.set_current_version("echo", 1)
    assert await storage.agents.load_module_for("echo") == (1, module_hash(WASM_1), WASM_1)
    assert await storage.agents.load_module_for("echo", 2) == (2, module_hash(WASM_2), WASM_2)
    assert await asyncio.to_thread(storage.agents.load_module_for_sync, "echo") == (
        1,
        module_hash(WASM_1),
        WASM_1,
    )
    versions = await storage.agents.versions("echo")
    assert [(v.version, v.module_hash, v.size) for v in versions] == [
        (1, module_hash(WASM_1), len(WASM_1)),
        (2, module_hash(WASM_2), len(WASM_2)),
    ]
    record = await storage.agents.get("echo")
    assert record is not None
    assert record.current_version == 1


async def test_unknown_agents_and_versions_are_not_found(storage: Storage) -> None:
    await storage.agents.create(AgentRecord(name="echo"), WASM_1)
    assert await storage.agents.get("ghost") is None
    with pytest.raises(AgentNotFound, match="no version 9"):
        await storage.agents.set_current_version("echo", 9)
    with pytest.raises(AgentNotFound, match="no version 9"):
        await storage.agents.load_module_for("echo", 9)
    for call in (
        storage.agents.add_version("ghost", WASM_2),
        storage.agents.set_current_version("ghost", 1),
        storage.agents.update("ghost", state="running"),
        storage.agents.delete("ghost"),
        storage.agents.versions("ghost"),
        storage.agents.load_module_for("ghost"),
    ):
        with pytest.raises(AgentNotFound, match="ghost"):
            await call
    with pytest.raises(StorageError, match="no module"):
        await storage.agents.get_module("0" * 64)


async def test_list_and_count_are_ordered_by_name_and_paginated(storage: Storage) -> None:
    for name in ("delta", "alpha", "charlie", "bravo"):
        await storage.agents.create(AgentRecord(name=name), WASM_1)
    assert await storage.agents.count() == 4
    assert [a.name for a in await storage.agents.page()] == ["alpha", "bravo", "charlie", "delta"]
    page = await storage.agents.page(offset=1, limit=2)
    assert [a.name for a in page] == ["bravo", "charlie"]


async def test_update_agent_changes_only_the_given_fields(storage: Storage) -> None:
    created = await storage.agents.create(AgentRecord(name="echo", env={"A": "1"}), WASM_1)
    updated = await storage.agents.update("echo", state="failed", last_error="trap", failures=3)
    assert (updated.state, updated.last_error, updated.failures) == ("failed", "trap", 3)
    assert updated.env == {"A": "1"}
    assert updated.updated_at >= created.updated_at
    cleared = await storage.agents.update("echo", last_error=None, limits={"fuel": 10})
    assert cleared.last_error is None
    assert cleared.limits == {"fuel": 10}
    assert cleared.state == "failed"


async def test_update_agent_refuses_a_field_that_is_not_updatable(storage: Storage) -> None:
    await storage.agents.create(AgentRecord(name="echo"), WASM_1)
    fields: dict[str, Any] = {"state": "running", "name = 'x', state": "failed"}
    with pytest.raises(TypeError, match="cannot set name = 'x', state"):
        await storage.agents.update("echo", **fields)
    with pytest.raises(TypeError, match="cannot set module_hash"):
        storage.agents.update_sync("echo", module_hash="0" * 64)  # type: ignore[call-arg]
    record = await storage.agents.get("echo")
    assert record is not None
    assert (record.name, record.state) == ("echo", AgentRecord(name="echo").state)


async def test_counters_and_sync_updates_from_a_worker_thread(storage: Storage) -> None:
    await storage.agents.create(AgentRecord(name="echo"), WASM_1)

    def worker() -> AgentRecord:
        futures = [
            storage.agents.add_to_counters_nowait("echo", messages_handled=1) for _ in range(50)
        ]
        futures.append(storage.agents.add_to_counters_nowait("echo", failures=2, restarts=1))
        for future in futures:
            future.result(5)
        return storage.agents.update_sync("echo", state="running")

    record = await asyncio.to_thread(worker)
    assert (record.messages_handled, record.failures, record.restarts) == (50, 2, 1)
    assert record.state == "running"
    assert await asyncio.to_thread(storage.agents.get_sync, "echo") == record


async def test_delete_cascades_and_collects_unused_modules(storage: Storage) -> None:
    await storage.agents.create(AgentRecord(name="a"), WASM_1)
    await storage.agents.add_version("a", WASM_2)
    await storage.agents.create(AgentRecord(name="b"), WASM_2)
    storage.kv.set_nowait("a", b"k", b"v").result(5)
    await storage.snapshots.save("a", b"memory", {})
    await storage.scheduled.add("a", 0.0, b"later")
    await storage.agents.delete("a")
    assert await storage.agents.get("a") is None
    assert await storage.kv.load("a") == {}
    assert await storage.snapshots.load("a") is None
    assert await storage.scheduled.list_all("a") == []
    assert await storage.read(lambda c: c.fetch_all("SELECT hash FROM modules")) == [
        (module_hash(WASM_2),)
    ]  # WASM_1 went with "a"; WASM_2 is still used by "b"
    await storage.agents.delete("b")
    assert await module_count(storage) == 0
