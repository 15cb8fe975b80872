"""`TaskSet`: the owner of background tasks cancels and awaits them, and reports crashes.

Also the rule it enforces: no ``create_task`` in the source outside `caxton.tasks` (every
background task has an owner with a shutdown path; a scope may use `asyncio.TaskGroup`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

import caxton
from caxton.tasks import TaskSet

SOURCE = Path(caxton.__file__).parent


async def test_aclose_cancels_and_awaits_every_task() -> None:
    tasks = TaskSet("test")
    started = asyncio.Event()
    cleaned: list[str] = []

    async def loop(name: str) -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # the cleanup itself awaits: aclose must wait for it
            cleaned.append(name)

    service = tasks.service(loop("service"), "svc")
    job = tasks.start(loop("job"), "job")
    await started.wait()
    assert len(tasks) == 2

    await tasks.aclose()

    assert sorted(cleaned) == ["job", "service"]
    assert service.cancelled()
    assert job.cancelled()
    assert len(tasks) == 0
    assert tasks.crashed == []  # cancelled by its owner: no crash


async def test_a_crashed_service_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet("test owner")

    async def broken() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="caxton.tasks"):
        task = tasks.service(broken(), "caxton-broken")
        await asyncio.wait([task])
        await asyncio.sleep(0)  # the done callbacks run

    assert [(name, type(error)) for name, error in tasks.crashed] == [("caxton-broken", ValueError)]
    [record] = caplog.records
    assert "caxton-broken" in record.getMessage()
    assert "test owner" in record.getMessage()
    assert "boom" in record.getMessage()
    assert record.exc_info is not None
    await tasks.aclose()


async def test_a_service_that_returns_early_is_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet("test")

    async def quits() -> None:
        return None

    with caplog.at_level(logging.ERROR, logger="caxton.tasks"):
        await asyncio.wait([tasks.service(quits(), "quitter")])
        await asyncio.sleep(0)

    assert tasks.crashed == [("quitter", None)]
    assert "quitter" in caplog.text
    assert "before its owner closed" in caplog.text
    await tasks.aclose()


async def test_a_failed_job_is_logged_unless_its_caller_awaits_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskSet("test")

    async def fails(text: str) -> None:
        raise RuntimeError(text)

    with caplog.at_level(logging.ERROR, logger="caxton.tasks"):
        logged = tasks.start(fails("nobody waits"), "orphan")
        awaited = tasks.start(fails("the caller hears"), "awaited", awaited=True)
        await asyncio.wait([logged, awaited])
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="the caller hears"):
            await awaited

    assert [name for name, _ in tasks.crashed] == ["orphan"]
    assert "nobody waits" in caplog.text
    assert "the caller hears" not in caplog.text
    await tasks.aclose()


async def test_stop_ends_one_service_without_calling_it_a_crash() -> None:
    tasks = TaskSet("test")
    first = tasks.service(asyncio.Event().wait(), "first")
    second = tasks.service(asyncio.Event().wait(), "second")
    await asyncio.sleep(0)

    await tasks.stop(first)

    assert first.cancelled()
    assert not second.done()
    assert tasks.crashed == []
    await tasks.aclose()
    assert second.cancelled()


async def test_drain_lets_jobs_finish_and_cancels_services_and_stragglers() -> None:
    tasks = TaskSet("test")
    finished: list[str] = []

    async def job(seconds: float, name: str) -> None:
        await asyncio.sleep(seconds)
        finished.append(name)

    service = tasks.service(asyncio.Event().wait(), "svc")
    quick = tasks.start(job(0.01, "quick"), "quick")
    slow = tasks.start(job(30.0, "slow"), "slow")

    await asyncio.wait_for(tasks.drain(1.0), timeout=10.0)

    assert finished == ["quick"]
    assert quick.done()
    assert not quick.cancelled()
    assert service.cancelled()
    assert slow.cancelled()
    assert tasks.crashed == []


def test_no_task_is_created_outside_its_owner() -> None:
    """A bare ``create_task`` / ``ensure_future`` leaves a task nobody cancels or watches."""
    bare = re.compile(r"\b(create_task|ensure_future)\(")
    found = []
    for path in SOURCE.rglob("*.py"):
        if path == SOURCE / "tasks.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if bare.search(line) and "group.create_task(" not in line:
                found.append(f"{path.relative_to(SOURCE)}:{number}: {line.strip()}")
    assert not found, "bare tasks (use caxton.tasks.TaskSet or asyncio.TaskGroup):\n" + "\n".join(
        found
    )
