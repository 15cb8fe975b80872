"""`TaskSet`: the owner of a component's background tasks.

Every background task of the node belongs to one `TaskSet`, and every `TaskSet` belongs to the
component that started it (the runtime, messaging, the agent service and its writer, the
nats-server child), whose ``aclose`` closes it; tasks that live in one scope use
`asyncio.TaskGroup` instead (the event stream's pump and reader). Two kinds of task:

* a **service** (`TaskSet.service`) runs until its owner closes: a loop such as the timer queue
  or the journal flusher. If it ends before that, by an exception or by returning, that is a
  crash: it is logged with its traceback at ERROR and counted in `TaskSet.crashed`.
* a **job** (`TaskSet.start`) runs to its end: a dead letter to write, a lifecycle operation.
  Its exception is logged unless somebody awaits its result (``awaited=True``: the caller hears
  of the failure, so the log does not repeat it).

`TaskSet.aclose` cancels what still runs and awaits it all; `TaskSet.drain` first gives the
jobs some time to end by themselves; `TaskSet.stop` ends one task early. Nothing a task raises
disappears without a trace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["TaskSet"]

_log = logging.getLogger("caxton.tasks")

T = TypeVar("T")


class TaskSet:
    """Background tasks with one owner: started by name, crashes logged, closed together."""

    def __init__(self, owner: str, *, log: logging.Logger | None = None) -> None:
        #: Who owns these tasks (it names them in the log).
        self.owner = owner
        self._log = log if log is not None else _log
        self._tasks: set[asyncio.Task[Any]] = set()
        self._services: set[asyncio.Task[Any]] = set()
        self._stopping: set[asyncio.Task[Any]] = set()
        self._closing = False
        #: (task name, error) of the tasks that crashed: services that ended before `aclose`,
        #: jobs that raised (``None`` for a service that returned).
        self.crashed: list[tuple[str, BaseException | None]] = []

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def closing(self) -> bool:
        """True once `aclose` or `drain` began."""
        return self._closing

    def service(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a task that must run until `aclose`; its ending early is logged as a crash."""
        task = self._start(coro, name)
        self._services.add(task)
        task.add_done_callback(self._service_done)
        return task

    def start(
        self, coro: Coroutine[Any, Any, T], name: str, *, awaited: bool = False
    ) -> asyncio.Task[T]:
        """Start a job; its exception is logged unless ``awaited`` (its caller reads it)."""
        task = self._start(coro, name)
        if not awaited:
            task.add_done_callback(self._job_done)
        return task

    def _start(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _service_done(self, task: asyncio.Task[Any]) -> None:
        self._services.discard(task)
        stopped = task in self._stopping
        self._stopping.discard(task)
        if task.cancelled() and (self._closing or stopped):
            return
        error = None if task.cancelled() else task.exception()
        if error is None and self._closing:
            return
        self.crashed.append((task.get_name(), error))
        if error is not None:
            self._log.error(
                "background task %s of the %s crashed: %s",
                task.get_name(),
                self.owner,
                error,
                exc_info=error,
            )
        else:
            how = "was cancelled" if task.cancelled() else "ended"
            self._log.error(
                "background task %s of the %s %s before its owner closed",
                task.get_name(),
                self.owner,
                how,
            )

    def _job_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.crashed.append((task.get_name(), error))
            self._log.error(
                "task %s of the %s failed: %s",
                task.get_name(),
                self.owner,
                error,
                exc_info=error,
            )

    async def stop(self, task: asyncio.Task[Any]) -> None:
        """Cancel one task of this set and wait until it has ended (a stop, not a crash)."""
        self._stopping.add(task)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def drain(self, budget: float | None = None) -> None:
        """Cancel the services, give the jobs up to ``budget`` seconds (None: as long as they
        take) to end by themselves, then close (see `aclose`)."""
        self._closing = True
        for task in self._services:
            task.cancel()
        jobs = [task for task in self._tasks if task not in self._services]
        if jobs and (budget is None or budget > 0):
            await asyncio.wait(jobs, timeout=budget)
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel every task still running and wait until all have ended (idempotent)."""
        self._closing = True
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)

    async def __aenter__(self) -> TaskSet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
