"""The runtime's seams (`caxton.runtime.ports`) implemented over the node's SQLite store.

* `StoredKv`: the host's ``kv_*`` imports; reads a key at a time; each change returns once
  committed (group-committed with other writes, in issue order), or raises `StorageError`.
* `StoredSnapshots`: hibernated agents' linear memory (packed by storage, written behind) and
  mutable globals (in the snapshot's JSON meta).
* `StoredTimers`: pending ``schedule`` timers, so a restart re-arms what is still due.
* `PersistingEvents`: marks agents whose state changed or whose message failed in a
  `DirtyAgents`, so the agent service writes their state, counters and last error; and forwards
  every event to an optional listener (the messaging layer's dead letters, the API's event
  stream). Whoever wires the node makes the `DirtyAgents` and hands it to both.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future, wait
from typing import Any

import msgspec

from caxton.agents.changes import AgentChanges
from caxton.clock import SYSTEM_CLOCK, Clock
from caxton.errors import AgentFailure
from caxton.runtime import AgentEvents, AgentState, Snapshot
from caxton.storage import (
    KvRepository,
    ScheduledRecord,
    SnapshotsRepository,
    Storage,
    is_storage_failure,
)
from caxton.storage.snapshots import SparseMemory

__all__ = ["DirtyAgents", "PersistingEvents", "StoredKv", "StoredSnapshots", "StoredTimers"]

log = logging.getLogger("caxton.agents")

#: Longest wait (seconds) for an agent's queued key/value writes before its usage is counted.
USAGE_WAIT = 5.0


def _report(future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None and not is_storage_failure(exc):  # the store logs a full disk once
        log.warning("a background write for an agent failed: %s", exc)


class StoredKv:
    """`KvBackend` over the store's kv repository (``storage.kv``; survives restarts).

    Writes are queued without waiting; until one commits, its value (None for a delete) stays
    in ``_pending`` so a `get` right after a `set` sees it (the runtime's cache may have
    evicted the key meanwhile), and `usage` waits for the agent's queued writes first.
    """

    def __init__(self, kv: KvRepository) -> None:
        self._kv = kv
        self._lock = threading.Lock()
        #: (agent, key) -> (the write's future, its value or None for a delete).
        self._pending: dict[tuple[str, bytes], tuple[Future[Any], bytes | None]] = {}

    def get(self, agent: str, key: bytes) -> bytes | None:
        with self._lock:
            pending = self._pending.get((agent, key))
        if pending is not None:
            return pending[1]
        return self._kv.get_sync(agent, key)

    def usage(self, agent: str) -> tuple[int, int]:
        with self._lock:
            queued = [f for (name, _), (f, _) in self._pending.items() if name == agent]
        if queued:
            wait(queued, timeout=USAGE_WAIT)
        return self._kv.usage_sync(agent)

    def set(self, agent: str, key: bytes, value: bytes) -> None:
        # Waits for the commit (group-committed with everything else being written), so that
        # kv_set answers OK only for a value that is on disk, and an error when it is not.
        future = self._kv.set_nowait(agent, key, value)
        self._track(agent, key, value, future)
        future.result()

    def delete(self, agent: str, key: bytes) -> None:
        future = self._kv.delete_nowait(agent, key)
        self._track(agent, key, None, future)
        future.result()

    def drop(self, agent: str) -> None:
        with self._lock:
            for pair in [p for p in self._pending if p[0] == agent]:
                del self._pending[pair]
        self._kv.clear_nowait(agent).add_done_callback(_report)

    def _track(self, agent: str, key: bytes, value: bytes | None, future: Future[Any]) -> None:
        with self._lock:
            self._pending[(agent, key)] = (future, value)
        future.add_done_callback(lambda f: self._settled(agent, key, f))

    def _settled(self, agent: str, key: bytes, future: Future[Any]) -> None:
        with self._lock:
            pending = self._pending.get((agent, key))
            if pending is not None and pending[0] is future:
                del self._pending[(agent, key)]
        _report(future)


class StoredSnapshots:
    """`SnapshotBackend` over ``storage.snapshots`` (worker threads), written behind.

    `save` packs the memory and queues the write without waiting for its commit, so hibernating
    an agent costs a copy, not a commit; until the write commits the snapshot stays in
    ``_pending`` and `load` serves it from there (a message right after hibernation restores
    without touching SQLite). The storage writer commits in submission order, so a later delete
    of the same agent cannot be overtaken. If the node dies before the commit, the agent comes
    back with a fresh instance (linear memory is not durable; docs/agents.md says so).

    Remembers which agents have a stored snapshot, so the deletes the runtime issues on every
    start and stop cost nothing for agents that never hibernated. `mark` tells it about
    snapshots found in the store at node start.
    """

    def __init__(self, snapshots: SnapshotsRepository) -> None:
        self._snapshots = snapshots
        self._known: set[str] = set()
        self._pending: dict[str, Snapshot] = {}
        self._lock = threading.Lock()

    def mark(self, agent: str) -> None:
        """Record that ``agent`` may have a stored snapshot."""
        with self._lock:
            self._known.add(agent)

    def save(self, agent: str, snapshot: Snapshot) -> None:
        meta: dict[str, Any] = {"pages": snapshot.pages, "version": snapshot.version}
        if snapshot.globals:
            meta["globals"] = [list(value) for value in snapshot.globals]
        with self._lock:
            self._known.add(agent)
            self._pending[agent] = snapshot
        memory = SparseMemory(snapshot.size, snapshot.data)
        written = self._snapshots.save_nowait(agent, memory, meta)
        written.add_done_callback(lambda f: self._settled(agent, snapshot, f))

    def _settled(self, agent: str, snapshot: Snapshot, written: Future[None]) -> None:
        with self._lock:
            if self._pending.get(agent) is snapshot:
                del self._pending[agent]
        error = written.exception()
        if error is not None and not is_storage_failure(error):
            log.error("saving the memory snapshot of %s failed: %s", agent, error)

    def load(self, agent: str) -> Snapshot | None:
        with self._lock:
            pending = self._pending.get(agent)
            if pending is not None:
                return pending
            if agent not in self._known:
                return None
        found = self._snapshots.load_sparse_sync(agent)
        if found is None:
            return None
        memory, meta = found
        # Snapshots stored before globals were kept have no "globals": memory only, as then.
        values = tuple((int(i), str(t), int(b)) for i, t, b in meta.get("globals", ()))
        return Snapshot(memory.size, memory.pages, int(meta["version"]), values)

    def delete(self, agent: str) -> None:
        with self._lock:
            self._pending.pop(agent, None)
            if agent not in self._known:
                return
            self._known.discard(agent)
        self._snapshots.delete_nowait(agent)


class _Envelope(msgspec.Struct):
    sender: str | None = None


_decode_sender = msgspec.json.Decoder(_Envelope).decode


class StoredTimers:
    """`TimerBackend` over `Storage` scheduled rows (loop thread; never blocks).

    A row belongs to the agent that scheduled it (the message's ``sender``; removing the
    agent cancels its timers) and holds ``json([receiver, delay]) + b"\\n" + message``, so a
    receiver that is not an agent (an API client) survives too. Due times are stored as unix
    seconds (the only clock that means anything across a restart), with the delay that was
    left when the row was written: a timer re-armed after a restart waits at most that long,
    however far the wall clock jumped back meanwhile (rows of older versions hold
    ``json(receiver)`` and no delay).
    """

    def __init__(self, storage: Storage, *, clock: Clock = SYSTEM_CLOCK):
        """``clock`` must be the runtime's: due times are on its monotonic clock."""
        self._storage = storage
        self._clock = clock
        self._rows: dict[int, Future[int]] = {}

    def add(self, timer_id: int, due: float, receiver: str, data: bytes) -> None:
        try:
            owner = _decode_sender(data).sender
        except msgspec.DecodeError:
            owner = None
        if owner is None:
            return  # not persisted; it still fires unless the node restarts first
        delay = max(0.0, due - self._clock.monotonic())
        body = msgspec.json.encode([receiver, round(delay, 3)]) + b"\n" + data
        future = self._storage.scheduled.add_nowait(owner, self._clock.wall() + delay, body)
        future.add_done_callback(_report)
        self._rows[timer_id] = future

    def writable(self) -> bool:
        """False while the store reports it cannot write (`Storage.problem`: /ready is 503)."""
        return self._storage.problem is None

    def remove(self, timer_id: int) -> None:
        future = self._rows.pop(timer_id, None)
        if future is not None:
            future.add_done_callback(self._delete_row)

    def _delete_row(self, future: Future[int]) -> None:
        if future.exception() is None:
            self._storage.scheduled.delete_nowait(future.result()).add_done_callback(_report)

    @staticmethod
    def decode(record: ScheduledRecord, now: float) -> tuple[str, bytes, float]:
        """``(receiver, message, seconds to wait from now)`` of a stored timer.

        ``now`` is the wall clock (unix seconds); the wait is never more than the delay the
        timer had left when it was stored.
        """
        head, _, data = record.body.partition(b"\n")
        stored: str | list[Any] = msgspec.json.decode(head, type=str | list[Any])
        wait = max(0.0, record.due_at - now)
        if isinstance(stored, str):
            return stored, data, wait
        receiver, left = stored
        return str(receiver), data, min(wait, float(left))


class DirtyAgents:
    """Agents whose stored record may be behind the runtime (event loop thread only).

    `PersistingEvents` marks them as the runtime reports state changes and failed messages;
    the agent service's record writer waits for a mark (`wait`) and takes the names (`take`).
    """

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._marked = asyncio.Event()

    def mark(self, name: str) -> None:
        """Remember that ``name``'s record should be written, and wake a `wait`."""
        self._names.add(name)
        self._marked.set()

    async def wait(self) -> None:
        """Return once an agent was marked since the last `wait` returned."""
        await self._marked.wait()
        self._marked.clear()

    def take(self) -> set[str]:
        """The names marked since the last `take` (and forget them)."""
        names, self._names = self._names, set()
        return names


class PersistingEvents:
    """`AgentEvents` that marks the agents whose record needs writing in ``dirty``.

    ``forward`` (another `AgentEvents`) receives every event too; ``changes`` hears of every
    state change (the cluster's registry listens there).
    """

    def __init__(
        self,
        dirty: DirtyAgents,
        forward: AgentEvents | None = None,
        changes: AgentChanges | None = None,
    ) -> None:
        self.forward = forward
        self._dirty = dirty
        self._changes = changes

    def message_failed(self, name: str, data: bytes, error: AgentFailure) -> None:
        self._dirty.mark(name)
        if self.forward is not None:
            self.forward.message_failed(name, data, error)

    def agent_state_changed(self, name: str, state: AgentState) -> None:
        self._dirty.mark(name)
        if self._changes is not None:
            self._changes.notify(name)
        if self.forward is not None:
            self.forward.agent_state_changed(name, state)
