"""A small pool of reader threads, each owning one read-only connection.

Reads run off the event loop (SQLite releases the GIL while it works), several at a time, and
never wait for the writer: under WAL a reader sees the last committed state. Each read callable
runs inside one read transaction, so all of its queries see the same snapshot.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caxton.errors import StorageError
from caxton.storage import _connection
from caxton.storage._connection import Connection

__all__ = ["ReaderPool"]

_STOP = object()


@dataclass(frozen=True, slots=True)
class _Job:
    fn: Callable[[Connection], Any]
    future: Future[Any]


class ReaderPool:
    """``size`` threads answering read callables in FIFO order."""

    def __init__(self, path: Path, size: int) -> None:
        if size < 1:
            raise ValueError("a reader pool needs at least one thread")
        self._path = path
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._accepting = True
        self._reads = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"caxton-storage-reader-{i}", daemon=True)
            for i in range(size)
        ]

    def start(self) -> None:
        """Start the threads (each opens its connection on its first read)."""
        for thread in self._threads:
            thread.start()

    def is_reader_thread(self) -> bool:
        """True when called from one of this pool's threads."""
        return threading.current_thread() in self._threads

    @property
    def reads(self) -> int:
        """Read callables completed (successfully or not)."""
        return self._reads

    def submit(self, fn: Callable[[Connection], Any]) -> Future[Any]:
        """Queue ``fn``; raises `StorageError` once the pool is stopping."""
        future: Future[Any] = Future()
        with self._lock:
            if not self._accepting:
                raise StorageError("the state store is closed")
            self._queue.put(_Job(fn, future))
        return future

    def stop(self, timeout: float | None = None) -> None:
        """Let queued reads finish, then stop every thread and close its connection."""
        with self._lock:
            if self._accepting:
                self._accepting = False
                for _ in self._threads:
                    self._queue.put(_STOP)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    def _run(self) -> None:
        conn: Connection | None = None
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                assert isinstance(item, _Job)
                fn, future = item.fn, item.future
                if not future.set_running_or_notify_cancel():
                    continue
                error: BaseException | None = None
                try:
                    if conn is None:
                        conn = _connection.connect(self._path, read_only=True)
                    result = _read(conn, fn)
                except BaseException as exc:
                    error = exc
                # counted before the reader hears of it: statistics taken after an awaited
                # read include it
                with self._lock:
                    self._reads += 1
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)
        finally:
            if conn is not None:
                _connection.close(conn)


def _read(conn: Connection, fn: Callable[[Connection], Any]) -> Any:
    with _connection.sqlite_errors("cannot read the state database"):
        conn._raw_execute("BEGIN")
    try:
        return fn(conn)
    finally:
        with contextlib.suppress(Exception):
            conn._raw_execute("ROLLBACK")
