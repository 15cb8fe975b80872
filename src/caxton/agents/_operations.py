"""`Operations`: lifecycle operations that run to their end whatever happens to their caller.

A deploy or an upgrade touches the runtime and the store in several steps. If the coroutine that
performs them were cancelled between two steps (an HTTP request passing ``request_timeout``,
or its client going away), the steps done would stay done and the rest never happen: an agent
running but not stored, or running version 2 while the store says 1. So each operation runs as a
task owned here; the caller waits for it through `asyncio.shield`. A cancelled caller stops
waiting, the operation completes (or fails and undoes itself), and its outcome is logged since
nobody else hears of it. `aclose` waits for what still runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from caxton.tasks import TaskSet

__all__ = ["Operations"]

log = logging.getLogger("caxton.agents")

T = TypeVar("T")


class Operations:
    """The lifecycle operations of one agent service that are running now."""

    def __init__(self) -> None:
        self._tasks = TaskSet("agent service", log=log)

    async def run(self, what: str, operation: Coroutine[Any, Any, T]) -> T:
        """Run ``operation`` (``what`` names it in the log) to its end; return its result.

        Cancelling the caller cancels the wait only.
        """
        task = self._tasks.start(operation, f"caxton {what}", awaited=True)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                task.add_done_callback(lambda done: _orphaned(what, done))
            raise

    async def aclose(self, budget: float) -> None:
        """Wait up to ``budget`` seconds for the running operations, then cancel the rest."""
        await self._tasks.drain(budget)


def _orphaned(what: str, task: asyncio.Task[Any]) -> None:
    """Log how an operation ended whose caller had stopped waiting."""
    if task.cancelled():
        log.warning("the %s was cancelled at shutdown", what)
    elif task.exception() is not None:
        log.warning("the %s failed after its caller stopped waiting: %s", what, task.exception())
    else:
        log.info("the %s completed after its caller stopped waiting", what)
