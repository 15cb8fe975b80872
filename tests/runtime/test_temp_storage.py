"""``temp_storage_limit``: granted directories hold at most that many bytes, across all agents.

A real agent (``tests/runtime/agents/files.c``, built with clang and wasi-libc) writes real
files in its granted directory through WASI; a write past the limit fails with ``ENOSPC`` in the
agent, and space freed by deleting files can be used again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from caxton.clock import ManualClock
from caxton.config.schema import RuntimeConfig
from caxton.runtime import AgentSpec, Engine, Runtime
from caxton.runtime.sandbox.quota import RESCAN_INTERVAL, TempStorage, directory_bytes
from tests.messaging.conftest import build_c

from .conftest import FLAVOURS

SOURCE = Path(__file__).parent / "agents" / "files.c"
LIMIT = 200_000
ENOSPC = 51  # wasi-libc's errno values are WASI's


class Files:
    """Deploys `files` agents with grants under ``root`` and asks them to write."""

    def __init__(self, runtime: Runtime, engine: Engine, root: Path) -> None:
        self.runtime = runtime
        self.engine = engine
        self.root = root
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.compiled = engine.compile(build_c(SOURCE))

    def grant(self, name: str) -> Path:
        path = self.root / name / "data"
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def deploy(self, name: str) -> Path:
        path = self.grant(name)
        await self.runtime.start_agent(AgentSpec(name=name, grant_dir=path), self.compiled)
        return path

    async def ask(self, name: str, **content: Any) -> dict[str, Any]:
        body = {"receiver": name, "sender": "t", "performative": "request", "content": content}
        self.runtime.deliver_nowait(name, json.dumps(body).encode())
        reply = json.loads(await asyncio.wait_for(self.inbox.get(), 10))
        answer: dict[str, Any] = reply["content"]
        return answer


@pytest.fixture(params=FLAVOURS)
async def files(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Files]:
    config = RuntimeConfig(max_concurrent_executions=2, temp_storage_limit=LIMIT)
    engine = Engine(config, cache_dir=None, accelerated=request.param == "c")
    holder: list[Files] = []
    external: Callable[[str, bytes], None] = lambda r, d: holder[0].inbox.put_nowait(d)  # noqa: E731
    async with Runtime(config, engine=engine, external=external) as rt:
        holder.append(Files(rt, engine, tmp_path / "agents"))
        yield holder[0]
    engine.close()


async def test_writes_stop_at_the_limit_with_enospc(files: Files) -> None:
    data = await files.deploy("files")
    assert await files.ask("files", op="write", file="a", bytes=150_000) == {
        "written": 150_000,
        "errno": 0,
        "fd": 4,
    }
    answer = await files.ask("files", op="write", file="a", bytes=100_000, chunk=4096)
    assert answer["errno"] == ENOSPC
    assert answer["written"] == 12 * 4096  # every whole chunk that fitted
    assert (data / "a").stat().st_size == 150_000 + 12 * 4096
    stats = files.runtime.statistics()  # what the metrics show
    assert stats.temp_storage_refused == 1
    assert stats.temp_storage_limit == LIMIT
    assert stats.temp_storage_bytes == 150_000 + 12 * 4096


async def test_deleting_files_frees_the_space(files: Files) -> None:
    data = await files.deploy("files")
    assert (await files.ask("files", op="write", file="a", bytes=190_000))["errno"] == 0
    assert (await files.ask("files", op="write", file="b", bytes=20_000))["errno"] == ENOSPC
    assert (await files.ask("files", op="delete", file="a"))["errno"] == 0
    await asyncio.sleep(RESCAN_INTERVAL)  # the account rescans at most this often
    answer = await files.ask("files", op="write", file="b", bytes=150_000)
    assert answer == {"written": 150_000, "errno": 0, "fd": answer["fd"]}
    assert directory_bytes(data) == 150_000 + (data / "b").stat().st_size - 150_000


async def test_the_limit_is_shared_by_all_agents_and_counts_existing_files(files: Files) -> None:
    (files.grant("old") / "kept").write_bytes(b"k" * 120_000)  # there before this node started
    await files.deploy("old")
    await files.deploy("new")
    answer = await files.ask("new", op="write", file="a", bytes=100_000, chunk=10_000)
    assert answer["errno"] == ENOSPC
    assert answer["written"] == 80_000
    assert files.engine.temp_storage.used <= LIMIT


async def test_growing_a_file_by_truncate_is_checked(files: Files) -> None:
    data = await files.deploy("files")
    await files.ask("files", op="write", file="a", bytes=10)
    assert (await files.ask("files", op="truncate", file="a", size=1_000_000))["errno"] == ENOSPC
    assert (data / "a").stat().st_size == 10
    assert (await files.ask("files", op="truncate", file="a", size=100_000))["errno"] == 0
    assert (data / "a").stat().st_size == 100_000
    assert (await files.ask("files", op="truncate", file="a", size=0))["errno"] == 0


async def test_a_file_cannot_take_over_stdout(files: Files) -> None:
    await files.deploy("files")
    answer = await files.ask("files", op="stdio", file="a", bytes=300_000)
    assert answer["fd"] > 2  # closing stdout was a no-op: the file got a fresh descriptor
    assert answer["errno"] == ENOSPC


async def test_removing_an_agent_stops_counting_its_directory(files: Files) -> None:
    await files.deploy("big")
    assert (await files.ask("big", op="write", file="a", bytes=190_000))["errno"] == 0
    await files.runtime.remove_agent("big")
    await files.deploy("next")
    assert (await files.ask("next", op="write", file="a", bytes=150_000))["errno"] == 0


def test_the_account_rescans_before_refusing(tmp_path: Path) -> None:
    clock = ManualClock(0.0)
    quota = TempStorage(1000, clock=clock)
    (tmp_path / "f").write_bytes(b"x" * 600)
    quota.add(tmp_path)
    assert quota.used == 600
    assert quota.reserve(400)
    with (tmp_path / "f").open("ab") as f:
        f.write(b"x" * 400)
    quota.settle(400, 400)
    assert not quota.reserve(1)  # full, and a rescan finds it full
    (tmp_path / "f").write_bytes(b"x" * 100)  # shrunk meanwhile
    assert not quota.reserve(1)  # within RESCAN_INTERVAL of the last scan: no new scan
    clock.advance(RESCAN_INTERVAL)
    assert quota.reserve(800)  # rescanned: 100 used
    assert quota.used == 900
    quota.settle(800, 300)  # a short write
    assert quota.used == 400
    assert quota.refused == 2


def test_writes_in_flight_survive_a_rescan(tmp_path: Path) -> None:
    clock = ManualClock(0.0)
    quota = TempStorage(1000, clock=clock)
    quota.add(tmp_path)
    assert quota.reserve(700)  # not on disk yet
    clock.advance(RESCAN_INTERVAL)
    assert not quota.reserve(400)  # the rescan finds nothing on disk, but 700 are in flight
    assert quota.reserve(300)
