"""`StorageCore`: the lifecycle of the state store and its generic read/write entry points.

The typed repositories (agents, kv, snapshots, scheduled, messages) each hold the store they
read and write through; `caxton.storage.Storage` makes them and owns them.
"""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from caxton.errors import StorageError
from caxton.storage._connection import Connection, private_file
from caxton.storage._lock import StateLock
from caxton.storage._readers import ReaderPool
from caxton.storage._writer import Writer, WriteStatistics

__all__ = ["StorageCore", "StorageState", "StorageStatistics"]

T = TypeVar("T")

#: Reader threads (and connections) per store.
DEFAULT_READERS = 4


class StorageState(enum.Enum):
    """Where a store is in its life: it is opened once and closed once, never reopened."""

    UNSTARTED = "unstarted"
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class StorageStatistics(WriteStatistics):
    """The store's counters since it was opened: the writer's and the readers' (metrics derive
    from these; ``ops / commits`` is the group-commit factor)."""

    #: Read callables completed.
    reads: int


class StorageCore:
    """The state store: one writer thread with group commit, a pool of readers, a file lock.

    Lifecycle ``UNSTARTED -> RUNNING -> CLOSED``. `open` (or ``async with Storage(path)``)
    takes ``<path>.lock``, applies the PRAGMAs, migrates the schema and starts the threads;
    `aclose` flushes every queued write, stops the threads and releases the lock.
    """

    def __init__(
        self, path: Path, *, journal_mode: str = "WAL", readers: int = DEFAULT_READERS
    ) -> None:
        self.path = Path(path)
        self.journal_mode = journal_mode
        self._readers_count = readers
        self._state = StorageState.UNSTARTED
        self._state_lock = threading.Lock()
        self._lock: StateLock | None = None
        self._writer: Writer | None = None
        self._readers: ReaderPool | None = None
        self._node_id = ""

    # --- lifecycle --------------------------------------------------------------------------

    @classmethod
    async def open(
        cls, path: Path, *, journal_mode: str = "WAL", readers: int = DEFAULT_READERS
    ) -> Self:
        """Open (creating if needed) the state database at ``path`` and return it RUNNING.

        Raises `StateLockedError` if another process (or another store in this one) holds the
        file, and `StorageError` if it cannot be opened, is not a database, or was written by a
        newer Caxton.
        """
        storage = cls(path, journal_mode=journal_mode, readers=readers)
        await storage.start()
        return storage

    @classmethod
    def open_sync(
        cls, path: Path, *, journal_mode: str = "WAL", readers: int = DEFAULT_READERS
    ) -> Self:
        """`open` for code without an event loop (CLI commands, worker processes)."""
        storage = cls(path, journal_mode=journal_mode, readers=readers)
        storage.start_sync()
        return storage

    async def start(self) -> None:
        """UNSTARTED -> RUNNING without blocking the event loop (see `open`).

        If the caller is cancelled while the store is opening, the store is closed as soon as
        the opening finishes, so the lock is never left held by a store nobody owns.
        """
        opening = asyncio.get_running_loop().run_in_executor(None, self.start_sync)
        try:
            await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(lambda _: self.close())
            raise

    def start_sync(self) -> None:
        """UNSTARTED -> RUNNING, blocking until the database is migrated (see `open`)."""
        with self._state_lock:
            if self._state is not StorageState.UNSTARTED:
                raise StorageError(f"the state store is {self._state.value}; it cannot be reopened")
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock = StateLock.acquire(self.path)
            private_file(self.path)
            writer = Writer(self.path, self.journal_mode)
            try:
                writer.start().result()
                node_id = writer.submit(
                    lambda c: c.fetch_value("SELECT value FROM meta WHERE key = 'node_id'")
                ).result()
            except BaseException:
                writer.stop()
                writer.join()
                lock.release()
                raise
            readers = ReaderPool(self.path, self._readers_count)
            readers.start()
            self._lock, self._writer, self._readers = lock, writer, readers
            self._node_id = str(node_id)
            self._state = StorageState.RUNNING

    async def aclose(self) -> None:
        """Flush every queued write, stop the threads, release the lock. Idempotent."""
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Blocking `aclose` for code without an event loop. Idempotent."""
        with self._state_lock:
            if self._state is StorageState.CLOSED:
                return
            self._state = StorageState.CLOSED
            writer, readers, lock = self._writer, self._readers, self._lock
        try:
            # Readers first: the writer's connection must be the last one open, so that its
            # close checkpoints the WAL and deletes local.db-wal / -shm (a read-only reader
            # closing last leaves them behind, and a restore by the guide's `gunzip -c >
            # local.db` would then have the old WAL replayed over the restored file).
            if readers is not None:
                readers.stop()
            if writer is not None:
                writer.stop()
                writer.join()
        finally:
            if lock is not None:
                lock.release()

    async def __aenter__(self) -> Self:
        if self._state is StorageState.UNSTARTED:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def state(self) -> StorageState:
        """UNSTARTED, RUNNING or CLOSED."""
        return self._state

    @property
    def node_id(self) -> str:
        """This node's id: a uuid generated when the database was created, kept forever."""
        self._running()
        return self._node_id

    @property
    def problem(self) -> str | None:
        """Why the store cannot be relied on to write now, or None when it can.

        A full disk or an I/O error (until a write succeeds again), a database file deleted,
        replaced or corrupted under the running node, or a store that is not running.
        """
        writer = self._writer
        if self._state is not StorageState.RUNNING or writer is None:
            return f"the state store {self.path} is {self._state.value}"
        return writer.health.problem

    def metric_samples(self) -> Iterator[tuple[str, str, dict[str, str], int, str]]:
        """Metric records for the observability layer's snapshot collector (plain tuples):
        ``storage_writable``, 1 while `problem` is None (what ``/ready`` checks), else 0."""
        yield (
            "storage_writable",
            "gauge",
            {},
            int(self.problem is None),
            "1 while the state store can write; 0 while it cannot (disk full, I/O error, the"
            " file deleted or corrupted): /ready answers 503 then.",
        )

    @property
    def problem_summary(self) -> str | None:
        """`problem` without the file's path (for callers without a token: ``/ready``)."""
        writer = self._writer
        if self._state is not StorageState.RUNNING or writer is None:
            return f"the state store is {self._state.value}"
        return writer.health.summary

    def statistics(self) -> StorageStatistics:
        """Counters of the writer and readers (zeros before the store is started)."""
        writer, readers = self._writer, self._readers
        if writer is None or readers is None:
            return StorageStatistics(0, 0, 0, 0, 0, 0, 0.0, 0)
        return StorageStatistics(**asdict(writer.statistics()), reads=readers.reads)

    # --- writes -----------------------------------------------------------------------------

    def write_nowait(self, fn: Callable[[Connection], T]) -> Future[T]:
        """Queue ``fn`` for the writer thread from any thread; never blocks.

        The future resolves with ``fn``'s result after the transaction holding it has committed,
        or with the exception ``fn`` raised (its changes undone, the rest of the batch kept).
        Writes submitted by one thread are applied in submission order. Raises `StorageError`
        if the store is not running.
        """
        return self._running()[0].submit(fn)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """`write_nowait` and wait for the commit without blocking the event loop.

        Cancelling the caller before the writer has taken the op drops the op; once the writer
        has taken it, it commits (or fails) regardless.
        """
        return await asyncio.wrap_future(self.write_nowait(fn))

    def write_sync(self, fn: Callable[[Connection], T]) -> T:
        """`write_nowait` and block until committed; for threads that run no event loop."""
        writer = self._running()[0]
        if threading.current_thread() is writer.thread:
            raise RuntimeError("write_sync() from inside a write callable would deadlock")
        _refuse_on_loop("write_sync", "write")
        future: Future[T] = writer.submit(fn)
        return future.result()

    # --- reads ------------------------------------------------------------------------------

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` on a reader connection, in one read transaction, off the event loop."""
        future: Future[T] = self._running()[1].submit(fn)
        return await asyncio.wrap_future(future)

    def read_sync(self, fn: Callable[[Connection], T]) -> T:
        """`read` for threads that run no event loop; blocks until ``fn`` has run."""
        readers = self._running()[1]
        if readers.is_reader_thread():
            raise RuntimeError("read_sync() from inside a read callable would deadlock")
        _refuse_on_loop("read_sync", "read")
        future: Future[T] = readers.submit(fn)
        return future.result()

    def _running(self) -> tuple[Writer, ReaderPool]:
        writer, readers = self._writer, self._readers
        if self._state is not StorageState.RUNNING or writer is None or readers is None:
            raise StorageError(f"the state store {self.path} is {self._state.value}")
        return writer, readers


def _refuse_on_loop(name: str, async_name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"{name}() would block the event loop; use 'await storage.{async_name}()'")
