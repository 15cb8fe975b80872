"""Deployed agents, their version history and the wasm modules behind the versions.

Modules are stored once per content (keyed by sha256), however many agents or versions use
them, and are deleted when no version references them any more. Every agent has versions
1, 2, ...; ``current_version`` is the one that runs, and
`AgentsRepository.set_current_version` rolls back.
Storage does not interpret ``state``; the runtime owns its vocabulary.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

from caxton.errors import AgentAlreadyExists, AgentNotFound, StorageError
from caxton.storage._connection import Connection, Row
from caxton.storage._core import StorageCore
from caxton.storage.messages import dead_letter_pending

__all__ = ["AgentChanges", "AgentRecord", "AgentsRepository", "VersionRecord", "module_hash"]


class AgentChanges(TypedDict, total=False):
    """The fields `AgentsRepository.update` may set: absent ones are left as they are."""

    state: str
    last_error: str | None  # None clears it
    restarts: int
    messages_handled: int
    failures: int
    env: dict[str, str]
    limits: dict[str, Any]
    grants: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRecord:
    """One deployed agent as stored. Pass one to `AgentsRepository.create` with what you know."""

    name: str
    state: str = "stopped"
    #: Filled in by storage: the version that runs, and the sha256 of its module.
    current_version: int = 0
    module_hash: str = ""
    env: dict[str, str] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    grants: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    last_error: str | None = None
    restarts: int = 0
    messages_handled: int = 0
    failures: int = 0


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One version of an agent: which module it runs and when it was added."""

    name: str
    version: int
    module_hash: str
    size: int
    created_at: float


def module_hash(wasm: bytes) -> str:
    """The content key of a module: sha256, lowercase hex."""
    return hashlib.sha256(wasm).hexdigest()


_SELECT_AGENT = """
    SELECT a.name, a.state, a.current_version, v.module_hash, a.env, a.limits, a.grants,
           a.created_at, a.updated_at, a.last_error, a.restarts, a.messages_handled, a.failures
    FROM agents a
    LEFT JOIN agent_versions v ON v.name = a.name AND v.version = a.current_version
"""


def _agent_from_row(row: Row) -> AgentRecord:
    return AgentRecord(
        name=row[0],
        state=row[1],
        current_version=row[2],
        module_hash=row[3] or "",
        env=json.loads(row[4]),
        limits=json.loads(row[5]),
        grants=json.loads(row[6]),
        created_at=row[7],
        updated_at=row[8],
        last_error=row[9],
        restarts=row[10],
        messages_handled=row[11],
        failures=row[12],
    )


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _get(conn: Connection, name: str) -> AgentRecord | None:
    row = conn.fetch_one(_SELECT_AGENT + " WHERE a.name = ?", (name,))
    return None if row is None else _agent_from_row(row)


def _require(conn: Connection, name: str) -> AgentRecord:
    record = _get(conn, name)
    if record is None:
        raise AgentNotFound(f"no agent named {name!r}", details={"name": name})
    return record


def _store_module(conn: Connection, wasm: bytes, now: float) -> str:
    digest = module_hash(wasm)
    conn.execute(
        "INSERT OR IGNORE INTO modules(hash, wasm, size, created_at) VALUES (?, ?, ?, ?)",
        (digest, wasm, len(wasm), now),
    )
    return digest


def _create(conn: Connection, record: AgentRecord, wasm: bytes) -> AgentRecord:
    if conn.fetch_one("SELECT 1 FROM agents WHERE name = ?", (record.name,)) is not None:
        raise AgentAlreadyExists(
            f"an agent named {record.name!r} already exists", details={"name": record.name}
        )
    now = time.time()
    digest = _store_module(conn, wasm, now)
    conn.execute(
        "INSERT INTO agents(name, state, current_version, env, limits, grants, created_at,"
        " updated_at, last_error, restarts, messages_handled, failures)"
        " VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.name,
            record.state,
            _json(record.env),
            _json(record.limits),
            _json(record.grants),
            now,
            now,
            record.last_error,
            record.restarts,
            record.messages_handled,
            record.failures,
        ),
    )
    conn.execute(
        "INSERT INTO agent_versions(name, version, module_hash, created_at) VALUES (?, 1, ?, ?)",
        (record.name, digest, now),
    )
    return _require(conn, record.name)


def _add_version(conn: Connection, name: str, wasm: bytes) -> int:
    _require(conn, name)
    now = time.time()
    digest = _store_module(conn, wasm, now)
    version = int(
        conn.fetch_value("SELECT MAX(version) FROM agent_versions WHERE name = ?", (name,))
    )
    version += 1
    conn.execute(
        "INSERT INTO agent_versions(name, version, module_hash, created_at) VALUES (?, ?, ?, ?)",
        (name, version, digest, now),
    )
    conn.execute(
        "UPDATE agents SET current_version = ?, updated_at = ? WHERE name = ?",
        (version, now, name),
    )
    return version


def _set_current(conn: Connection, name: str, version: int) -> None:
    _require(conn, name)
    known = conn.fetch_one(
        "SELECT 1 FROM agent_versions WHERE name = ? AND version = ?", (name, version)
    )
    if known is None:
        versions = [r[0] for r in conn.fetch_all(_VERSIONS_OF, (name,))]
        raise AgentNotFound(
            f"agent {name!r} has no version {version} (it has {versions})",
            details={"name": name, "version": version, "versions": versions},
        )
    conn.execute(
        "UPDATE agents SET current_version = ?, updated_at = ? WHERE name = ?",
        (version, time.time(), name),
    )


_VERSIONS_OF = "SELECT version FROM agent_versions WHERE name = ? ORDER BY version"

_UPDATABLE = AgentChanges.__optional_keys__
_JSON_FIELDS = frozenset({"env", "limits", "grants"})


def _update(conn: Connection, name: str, changes: dict[str, Any]) -> AgentRecord:
    _require(conn, name)
    if changes:
        columns = ", ".join(f"{column} = ?" for column in changes)
        values = [_json(v) if k in _JSON_FIELDS else v for k, v in changes.items()]
        conn.execute(
            f"UPDATE agents SET {columns}, updated_at = ? WHERE name = ?",
            (*values, time.time(), name),
        )
    return _require(conn, name)


def _add_counters(conn: Connection, name: str, deltas: dict[str, int]) -> None:
    columns = ", ".join(f"{column} = {column} + ?" for column in deltas)
    conn.execute(f"UPDATE agents SET {columns} WHERE name = ?", (*deltas.values(), name))


def _delete(conn: Connection, name: str) -> int:
    _require(conn, name)
    # Messages accepted for this agent belong to it, not to a later agent of the same name.
    moved = dead_letter_pending(conn, name, {"state": "removed"})
    hashes = [
        r[0]
        for r in conn.fetch_all(
            "SELECT DISTINCT module_hash FROM agent_versions WHERE name = ?", (name,)
        )
    ]
    conn.execute("DELETE FROM agents WHERE name = ?", (name,))  # cascades to the rest
    for digest in hashes:
        conn.execute(
            "DELETE FROM modules WHERE hash = ? AND NOT EXISTS"
            " (SELECT 1 FROM agent_versions WHERE module_hash = ?)",
            (digest, digest),
        )
    return moved


def _get_module(conn: Connection, digest: str) -> bytes:
    wasm = conn.fetch_value("SELECT wasm FROM modules WHERE hash = ?", (digest,))
    if wasm is None:
        raise StorageError(f"no module with hash {digest} is stored", details={"hash": digest})
    return bytes(wasm)


def _load_module_for(conn: Connection, name: str, version: int | None) -> tuple[int, str, bytes]:
    record = _require(conn, name)
    wanted = record.current_version if version is None else version
    digest = conn.fetch_value(
        "SELECT module_hash FROM agent_versions WHERE name = ? AND version = ?", (name, wanted)
    )
    if digest is None:
        raise AgentNotFound(
            f"agent {name!r} has no version {wanted}", details={"name": name, "version": wanted}
        )
    return wanted, str(digest), _get_module(conn, str(digest))


def _list_versions(conn: Connection, name: str) -> list[VersionRecord]:
    _require(conn, name)
    rows = conn.fetch_all(
        "SELECT v.name, v.version, v.module_hash, m.size, v.created_at"
        " FROM agent_versions v JOIN modules m ON m.hash = v.module_hash"
        " WHERE v.name = ? ORDER BY v.version",
        (name,),
    )
    return [VersionRecord(*row) for row in rows]


class AgentsRepository:
    """Agent records, versions and modules (``storage.agents``).

    Every method that names an agent raises `AgentNotFound` if there is none by that name.
    """

    def __init__(self, store: StorageCore) -> None:
        self._store = store

    async def create(self, record: AgentRecord, wasm: bytes) -> AgentRecord:
        """Store a new agent at version 1 running ``wasm``, in one transaction.

        Only ``name``, ``state``, ``env``, ``limits``, ``grants`` and the counters of
        ``record`` are used; the stored record (with times, version 1 and the module hash)
        is returned. Raises `AgentAlreadyExists` if the name is taken.
        """
        return await self._store.write(lambda c: _create(c, record, wasm))

    async def add_version(self, name: str, wasm: bytes) -> int:
        """Add ``wasm`` as the agent's next version and make it current; return its number."""
        return await self._store.write(lambda c: _add_version(c, name, wasm))

    async def set_current_version(self, name: str, version: int) -> None:
        """Make an existing version current (a rollback or roll-forward).

        Raises `AgentNotFound` for an unknown agent and for a version it does not have.
        """
        await self._store.write(lambda c: _set_current(c, name, version))

    async def get(self, name: str) -> AgentRecord | None:
        """The agent's record, or None."""
        return await self._store.read(lambda c: _get(c, name))

    def get_sync(self, name: str) -> AgentRecord | None:
        """`get` for threads without an event loop."""
        return self._store.read_sync(lambda c: _get(c, name))

    async def page(self, *, offset: int = 0, limit: int = 100) -> list[AgentRecord]:
        """A page of agents ordered by name."""
        sql = _SELECT_AGENT + " ORDER BY a.name LIMIT ? OFFSET ?"
        rows = await self._store.read(lambda c: c.fetch_all(sql, (limit, offset)))
        return [_agent_from_row(row) for row in rows]

    async def count(self) -> int:
        """How many agents are stored."""
        return int(await self._store.read(lambda c: c.fetch_value("SELECT COUNT(*) FROM agents")))

    async def update(self, name: str, **changes: Unpack[AgentChanges]) -> AgentRecord:
        """Set the given fields (others are left alone) and return the updated record."""
        checked = _checked(changes)
        return await self._store.write(lambda c: _update(c, name, checked))

    def update_sync(self, name: str, **changes: Unpack[AgentChanges]) -> AgentRecord:
        """`update` for threads without an event loop."""
        checked = _checked(changes)
        return self._store.write_sync(lambda c: _update(c, name, checked))

    def add_to_counters_nowait(
        self, name: str, *, messages_handled: int = 0, failures: int = 0, restarts: int = 0
    ) -> Future[None]:
        """Add to the agent's counters without waiting (group-committed; for worker threads).

        An unknown name changes nothing; the future still resolves normally.
        """
        deltas = {
            k: v
            for k, v in (
                ("messages_handled", messages_handled),
                ("failures", failures),
                ("restarts", restarts),
            )
            if v
        }
        if not deltas:
            done: Future[None] = Future()
            done.set_result(None)
            return done
        return self._store.write_nowait(lambda c: _add_counters(c, name, deltas))

    async def delete(self, name: str) -> int:
        """Delete the agent with its versions, kv, snapshot and timers; drop unused modules.

        Its pending deliveries become dead letters (``agent_not_running``, details
        ``{"state": "removed"}``) in the same transaction; returns how many.
        """
        return await self._store.write(lambda c: _delete(c, name))

    async def get_module(self, digest: str) -> bytes:
        """The module with that sha256; `StorageError` if none is stored."""
        return await self._store.read(lambda c: _get_module(c, digest))

    async def versions(self, name: str) -> list[VersionRecord]:
        """The agent's versions, oldest first."""
        return await self._store.read(lambda c: _list_versions(c, name))

    async def load_module_for(
        self, name: str, version: int | None = None
    ) -> tuple[int, str, bytes]:
        """``(version, hash, wasm)`` of the given version, or of the current one."""
        return await self._store.read(lambda c: _load_module_for(c, name, version))

    def load_module_for_sync(self, name: str, version: int | None = None) -> tuple[int, str, bytes]:
        """`load_module_for` for threads without an event loop."""
        return self._store.read_sync(lambda c: _load_module_for(c, name, version))


def _checked(changes: AgentChanges) -> dict[str, Any]:
    """The changes as a plain dict; unknown fields (they would name columns) are refused."""
    unknown = sorted(set(changes) - _UPDATABLE)
    if unknown:
        raise TypeError(f"agents.update() cannot set {', '.join(unknown)}")
    return dict(changes)
