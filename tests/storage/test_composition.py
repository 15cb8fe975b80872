"""`Storage` owns its repositories as attributes; none of them is a mixin of the store.

Each repository holds the store it reads and writes through, and `Storage.__init__` is the one
place they are made: the store's class has the lifecycle core as its only base.
"""

from __future__ import annotations

from caxton.storage import Storage
from caxton.storage._core import StorageCore
from caxton.storage.agents import AgentsRepository
from caxton.storage.kv import KvRepository
from caxton.storage.messages import MessagesRepository
from caxton.storage.scheduled import ScheduledRepository
from caxton.storage.snapshots import SnapshotsRepository

REPOSITORIES = {
    "agents": AgentsRepository,
    "kv": KvRepository,
    "messages": MessagesRepository,
    "scheduled": ScheduledRepository,
    "snapshots": SnapshotsRepository,
}


def test_storage_is_its_core_plus_repositories_it_owns(storage: Storage) -> None:
    assert Storage.__bases__ == (StorageCore,)
    for attribute, repository in REPOSITORIES.items():
        assert repository.__bases__ == (object,), repository
        assert type(getattr(storage, attribute)) is repository
        assert getattr(storage, attribute)._store is storage  # wired to this store


async def test_a_repository_works_through_the_store_it_was_given(
    storage: Storage, agent: str
) -> None:
    storage.kv.set_nowait(agent, b"k", b"v").result(5)
    assert await storage.read(lambda c: c.fetch_value("SELECT value FROM kv")) == b"v"
    assert await storage.kv.get(agent, b"k") == b"v"
