"""The writer thread: the only connection that writes, with group commit.

--- How a write becomes durable here

Any thread queues a write (a callable taking a `Connection`) with a future. The writer thread
blocks until the queue is non-empty, then takes everything queued, up to `MAX_BATCH` ops, and
runs the whole batch in ONE transaction: ``BEGIN IMMEDIATE``, then each op inside its own
``SAVEPOINT`` (an op that raises is rolled back to its savepoint and fails alone; the others
keep their changes), then a single ``COMMIT``. Only after the COMMIT returns are the futures
resolved, so a resolved future means the write is on disk (in the WAL). Under load, hundreds of
writes share one commit (one fsync at checkpoint time under WAL/NORMAL) instead of paying one
each; with no load a batch is one op and the latency is one commit.

The queue is FIFO and there is one writer, so writes submitted by one thread are applied in
the order they were submitted.

An op that fails with a storage-level error (a full disk, an I/O error: `storage_failure`)
fails its whole batch with that error: SQLite may have rolled the transaction back already, so
nothing of the batch is kept and every op is told so. The writer reports each batch to `Health`
and, every `CHECK_INTERVAL`, has it check the database file (and, while writes fail and nothing
else is written, commits a probe so that recovery is seen without traffic).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caxton.errors import StorageError
from caxton.storage import _connection, schema
from caxton.storage._connection import Connection, sqlite_errors
from caxton.storage._health import CHECK_INTERVAL, Health, storage_failure

__all__ = ["MAX_BATCH", "WriteStatistics", "Writer"]

#: The most ops one transaction takes; the rest wait for the next batch.
MAX_BATCH = 1000


@dataclass(frozen=True, slots=True)
class WriteStatistics:
    """Counters of the writer since the storage was opened."""

    #: Write ops that completed (their changes are committed).
    ops: int
    #: Write ops that raised (their changes were rolled back); they are not counted in ``ops``.
    failed_ops: int
    #: Transactions committed.
    commits: int
    #: Batches taken from the queue (a batch whose COMMIT failed is counted here, not in commits).
    batches: int
    #: The largest number of ops one batch held.
    max_batch: int
    #: Ops waiting in the queue right now.
    queue_depth: int
    #: How long the last COMMIT took, in seconds.
    last_commit_seconds: float


@dataclass(slots=True)
class _Op:
    fn: Callable[[Connection], Any]
    future: Future[Any]
    result: Any = None
    error: BaseException | None = None


_STOP = object()


@dataclass(slots=True)
class _Counters:
    ops: int = 0
    failed_ops: int = 0
    commits: int = 0
    batches: int = 0
    max_batch: int = 0
    last_commit_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Writer:
    """Owns the write connection in a thread; see the module docstring for the batching."""

    def __init__(self, path: Path, journal_mode: str) -> None:
        self._path = path
        self._journal_mode = journal_mode
        self._queue: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        self._accepting = True
        self._submit_lock = threading.Lock()
        self._counters = _Counters()
        self._started: Future[None] = Future()
        self.health = Health(path)
        self._thread = threading.Thread(target=self._run, name="caxton-storage-writer", daemon=True)

    def start(self) -> Future[None]:
        """Start the thread; the future resolves once the database is open and migrated."""
        self._thread.start()
        return self._started

    @property
    def thread(self) -> threading.Thread:
        """The writer thread (callers use it to refuse blocking waits from inside it)."""
        return self._thread

    def submit(self, fn: Callable[[Connection], Any]) -> Future[Any]:
        """Queue ``fn``; raises `StorageError` once `stop` has been called."""
        op = _Op(fn, Future())
        with self._submit_lock:
            if not self._accepting:
                raise StorageError("the state store is closed")
            self._queue.put(op)
        return op.future

    def stop(self) -> None:
        """Refuse new writes; the thread finishes every queued op, then exits."""
        with self._submit_lock:
            if not self._accepting:
                return
            self._accepting = False
            self._queue.put(_STOP)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to exit (after `stop`)."""
        if self._thread.is_alive():
            self._thread.join(timeout)

    def statistics(self) -> WriteStatistics:
        """A consistent snapshot of the counters."""
        c = self._counters
        with c.lock:
            return WriteStatistics(
                ops=c.ops,
                failed_ops=c.failed_ops,
                commits=c.commits,
                batches=c.batches,
                max_batch=c.max_batch,
                queue_depth=self._queue.qsize(),
                last_commit_seconds=c.last_commit_seconds,
            )

    # --- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            conn = _connection.connect(self._path, journal_mode=self._journal_mode)
        except BaseException as exc:
            self._fail_startup(exc)
            return
        try:
            try:
                schema.migrate(conn, self._path)
            except BaseException as exc:
                self._fail_startup(exc)
                return
            self.health.opened()
            self._started.set_result(None)
            self._serve(conn)
        finally:
            _connection.close(conn)
            self.health.close()  # after the connection: see Health.opened

    def _fail_startup(self, exc: BaseException) -> None:
        with self._submit_lock:
            self._accepting = False
        self._started.set_exception(exc)

    def _serve(self, conn: Connection) -> None:
        stopping = False
        next_check = time.monotonic() + CHECK_INTERVAL
        while not stopping:
            batch: list[_Op] = []
            try:
                item = self._queue.get(timeout=max(0.0, next_check - time.monotonic()))
            except queue.Empty:
                item = None
            while item is not None:
                if item is _STOP:
                    stopping = True  # everything queued before the stop is already in batch
                    break
                assert isinstance(item, _Op)
                if item.future.set_running_or_notify_cancel():
                    batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._run_batch(conn, batch)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + CHECK_INTERVAL
                self._check(conn, probe=not batch)

    def _count(self, batch: list[_Op], commit_error: BaseException | None, elapsed: float) -> None:
        c = self._counters
        with c.lock:
            c.batches += 1
            c.max_batch = max(c.max_batch, len(batch))
            if commit_error is None:
                c.commits += 1
                c.last_commit_seconds = elapsed
                c.ops += sum(1 for op in batch if op.error is None)
                c.failed_ops += sum(1 for op in batch if op.error is not None)
            else:
                c.failed_ops += len(batch)

    def _check(self, conn: Connection, *, probe: bool) -> None:
        self.health.check_file()
        if probe and self.health.writes_failing:
            self._run_batch(conn, [_Op(_probe, Future())], count=False)

    def _run_batch(self, conn: Connection, batch: list[_Op], *, count: bool = True) -> None:
        commit_error: BaseException | None = None
        elapsed = 0.0
        try:
            with sqlite_errors(f"cannot write to {self._path}"):
                conn._raw_execute("BEGIN IMMEDIATE")
                for op in batch:
                    _run_op(conn, op)
                started = time.perf_counter()
                conn._raw_execute("COMMIT")
                elapsed = time.perf_counter() - started
        except BaseException as exc:
            commit_error = exc
            with contextlib.suppress(Exception):  # the transaction may be gone already
                conn._raw_execute("ROLLBACK")
        failure = None if commit_error is None else storage_failure(commit_error)
        if commit_error is None:
            self.health.write_succeeded()
        elif failure is not None:
            self.health.write_failed(failure, len(batch) if count else 0)
        if count:
            self._count(batch, commit_error, elapsed)
        for op in batch:
            error = commit_error or op.error
            if error is not None:
                op.future.set_exception(error)
            else:
                op.future.set_result(op.result)


def _run_op(conn: Connection, op: _Op) -> None:
    conn._raw_execute("SAVEPOINT op")
    try:
        op.result = op.fn(conn)
    except Exception as exc:
        if storage_failure(exc) is not None:
            raise  # SQLite may have rolled back the whole transaction: the batch fails with it
        op.error = exc
        conn._raw_execute("ROLLBACK TO op")
    conn._raw_execute("RELEASE op")


def _probe(conn: Connection) -> None:
    """A write that leaves no trace but needs room in the file (a page goes to the WAL)."""
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('write_probe', '')")
    conn.execute("DELETE FROM meta WHERE key = 'write_probe'")
