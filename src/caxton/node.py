"""The node: the core services of one Caxton process, without any HTTP.

A `Node` owns, in start order: the state store, the wasmtime `Engine` (compiled modules cached
under ``<data_dir>/module-cache``), the `Messaging` layer with the agent `Runtime` it builds
(SQLite-backed kv, snapshots, timers and state events), and the `AgentService` that restores
every stored agent at start; then `Messaging.recover` delivers what was pending. It knows
nothing about aiohttp, Prometheus or the CLI: those leaves call its methods and its services'
(``node.agents``, ``node.messaging``, ...) and read their ``statistics()``.

The runtime's port to message delivery (`caxton.runtime.delivery.Delivery`) is messaging's
`DeliveryPort`, handed to the runtime at construction: `Messaging` builds the runtime around
it. Messages agents send to names that are neither local agents nor known API
clients go to `Node.on_external_message` when it is set (the ``forward`` hook of messaging,
where the cluster will plug in), else they are dead-lettered.

With ``[coordination] cluster_enabled`` the node also holds a `ClusterLink` (``node.cluster``:
its nats-server child and NATS client), started right after the state store and closed right
before it; without it, nothing of the cluster is imported. ``/ready`` waits for it to join.

Lifecycle: ``UNSTARTED -> STARTING -> RUNNING -> DRAINING -> CLOSED``. `start()` may be called
once; `aclose()` is idempotent and always releases the state file, even if starting failed half
way.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from caxton.config import Config
from caxton.errors import Error
from caxton.storage import Storage

if TYPE_CHECKING:
    from caxton.agents import AgentService
    from caxton.cluster.link import ClusterLink
    from caxton.cluster.messages import ClusterMessages
    from caxton.messaging import Messaging
    from caxton.runtime import Engine, Runtime
    from caxton.runtime.tracing import SpanLog

__all__ = ["Node", "NodeState", "Readiness"]

log = logging.getLogger("caxton.node")


class NodeState(enum.Enum):
    """Where a node is in its life."""

    UNSTARTED = "unstarted"
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Readiness:
    """What `/ready` reports: each dependency and the overall verdict."""

    storage: bool
    started: bool
    runtime: bool = False
    #: Why a check fails, by check name, when there is more to say than false (storage);
    #: without filesystem paths, since ``/ready`` shows it to anyone.
    reasons: dict[str, str] = field(default_factory=dict)
    #: The same with paths and what to do, for the operator (the admin listener's ``/status``).
    details: dict[str, str] = field(default_factory=dict)
    #: Whether the node has joined its cluster; None without ``cluster_enabled`` (no check).
    cluster: bool | None = None

    @property
    def ready(self) -> bool:
        """True when the node accepts work."""
        return self.storage and self.started and self.runtime and self.cluster is not False

    def as_dict(self) -> dict[str, bool]:
        """The checks as a JSON-ready mapping."""
        checks = {"storage": self.storage, "runtime": self.runtime, "started": self.started}
        if self.cluster is not None:
            checks["cluster"] = self.cluster
        return checks


class Node:
    """One Caxton node's core services."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state = NodeState.UNSTARTED
        self.started_at: float | None = None
        #: For embedding and tests: when set, called (on the event loop) with ``(receiver,
        #: message)`` for a message an agent sends to a name that is neither a local agent nor
        #: a known API client, instead of dead-lettering it.
        self.on_external_message: Callable[[str, bytes], None] | None = None
        self._storage: Storage | None = None
        self._messaging: Messaging | None = None
        self._engine: Engine | None = None
        self._runtime: Runtime | None = None
        self._agents: AgentService | None = None
        self._cluster: ClusterLink | None = None
        self._remote: ClusterMessages | None = None
        #: With tracing on, set before `start`: where traced work is recorded for spans.
        self.spans: SpanLog | None = None

    @property
    def storage(self) -> Storage:
        """The open state store (raises if the node is not started)."""
        if self._storage is None:
            raise Error("the node is not started")
        return self._storage

    @property
    def cluster(self) -> ClusterLink | None:
        """The cluster link once started (None without ``cluster_enabled``)."""
        return self._cluster

    @property
    def cluster_messages(self) -> ClusterMessages | None:
        """Messages across nodes once started (None without ``cluster_enabled``)."""
        return self._remote

    @property
    def engine(self) -> Engine:
        """The wasmtime engine and module cache (raises if the node is not started)."""
        if self._engine is None:
            raise Error("the node is not started")
        return self._engine

    @property
    def runtime(self) -> Runtime:
        """The agent runtime (raises if the node is not started)."""
        if self._runtime is None:
            raise Error("the node is not started")
        return self._runtime

    @property
    def agents(self) -> AgentService:
        """The agent service (raises if the node is not started)."""
        if self._agents is None:
            raise Error("the node is not started")
        return self._agents

    @property
    def messaging(self) -> Messaging:
        """The messaging layer (raises if the node is not started)."""
        if self._messaging is None:
            raise Error("the node is not started")
        return self._messaging

    def _external(self, receiver: str, data: bytes) -> bool:
        hook = self.on_external_message
        if hook is None:
            return False
        hook(receiver, data)
        return True

    async def start(self, *, prepare: Callable[[Node], Awaitable[None]] | None = None) -> None:
        """Open the state store, start the runtime and restore every agent; raises on failure.

        ``prepare`` (for example deploying the quick start's example agents) runs after the
        agents are restored and before the node reports ready.
        """
        if self.state is not NodeState.UNSTARTED:
            raise Error(f"cannot start a node that is {self.state.value}")
        self.state = NodeState.STARTING
        coordination = self.config.coordination
        # Imported here: wasmtime takes a few hundred ms to load, which CLI client commands
        # (and /health, answered before the node starts) need not wait for.
        from caxton.agents import (
            AgentChanges,
            AgentService,
            DirtyAgents,
            PersistingEvents,
            StoredKv,
            StoredSnapshots,
            StoredTimers,
        )
        from caxton.messaging import DeliveryPort, Messaging
        from caxton.runtime import Engine, Runtime

        try:
            storage = self._storage = await Storage.open(
                coordination.local_state_path, journal_mode=coordination.journal_mode
            )
            if coordination.cluster_enabled:
                from caxton.cluster.link import ClusterLink

                api = self.config.networking.bind_address
                self._cluster = ClusterLink(
                    coordination,
                    api_address=str(api),
                    agents=lambda: 0 if self._agents is None else len(self._agents.names()),
                    networking=self.config.networking,  # route TLS when tls_enabled
                )
                await self._cluster.start()
                from caxton.cluster.messages import ClusterMessages

                self._remote = ClusterMessages(self._cluster, storage)
            remote = self._remote
            engine = self._engine = Engine(
                self.config.runtime, cache_dir=coordination.data_dir / "module-cache"
            )

            # Shared by the runtime (its events mark agents, it loads snapshots) and the agent
            # service (it writes what was marked, it tells the snapshots what it restores).
            dirty, snapshots = DirtyAgents(), StoredSnapshots(storage.snapshots)
            changes = AgentChanges()  # the runtime's state changes and the service's operations

            def runtime_for(delivery: DeliveryPort) -> Runtime:
                return Runtime(
                    self.config.runtime,
                    engine=engine,
                    kv=StoredKv(storage.kv),
                    snapshots=snapshots,
                    events=PersistingEvents(dirty, delivery, changes),
                    delivery=delivery,
                    timers=StoredTimers(storage),
                    spans=self.spans,
                )

            messaging = self._messaging = Messaging(
                self.config, storage, runtime=runtime_for, forward=self._external, remote=remote
            )
            runtime = self._runtime = messaging.runtime
            if self._cluster is not None:  # member changes on the event stream
                self._cluster.publish_member_events(messaging.publish)
            await messaging.start()
            if remote is not None:  # what a previous run left in the outbox goes out now
                remote.attach(messaging)
                remote.start_forwarder()
            await runtime.start()
            self._agents = AgentService(
                self.config,
                storage=storage,
                engine=engine,
                runtime=runtime,
                dirty=dirty,
                snapshots=snapshots,
                changes=changes,
            )
            restored = await self._agents.restore_all()
            if self._cluster is not None:  # the registry lists what was restored
                await self._cluster.start_registry(self._agents, messaging.publish)
            redelivered = await messaging.recover()
            if remote is not None:  # other nodes' messages find the agents from now on
                await remote.open_inbox()
            if prepare is not None:
                await prepare(self)
            agents = len(self._agents.names())  # restored plus what `prepare` deployed
        except BaseException:
            await self.aclose()
            raise
        self.started_at = time.time()
        self.state = NodeState.RUNNING
        log.info(
            "node started",
            extra={
                "node_id": storage.node_id,
                "state_path": str(coordination.local_state_path),
                "agents": agents,
                "restored": restored,
                "redelivered": redelivered,
                "hot_path": "ctypes" if engine.accel is None else "c",
            },
        )

    def readiness(self) -> Readiness:
        """Whether the node is ready for work, and why not."""
        running = self.state is NodeState.RUNNING
        storage = self._storage
        problem = None if storage is None else storage.problem
        summary = None if storage is None else storage.problem_summary
        reasons = {} if problem is None else {"storage": summary or "cannot write"}
        details = {} if problem is None else {"storage": problem}
        cluster: bool | None = None
        if self.config.coordination.cluster_enabled:
            link = self._cluster
            why = "not started" if link is None else link.not_joined()
            cluster = why is None
            if why is not None:
                reasons["cluster"] = details["cluster"] = f"not joined: {why}"
        return Readiness(
            storage=storage is not None and running and problem is None,
            started=running,
            runtime=self._runtime is not None and running,
            reasons=reasons,
            details=details,
            cluster=cluster,
        )

    def begin_drain(self) -> None:
        """Stop accepting new work (readiness turns false); in-flight work goes on."""
        if self.state is NodeState.RUNNING:
            self.state = NodeState.DRAINING

    async def aclose(self) -> None:
        """Drain and stop every service, then release the state file. Idempotent.

        In-flight messages get ``agent_shutdown_timeout`` to finish; agents keep their stored
        state (running agents come back running at the next start).
        """
        if self.state is NodeState.CLOSED:
            return
        self.state = NodeState.DRAINING
        agents, self._agents = self._agents, None
        messaging, self._messaging = self._messaging, None
        runtime, self._runtime = self._runtime, None
        engine, self._engine = self._engine, None
        storage, self._storage = self._storage, None
        cluster, self._cluster = self._cluster, None
        remote, self._remote = self._remote, None
        try:
            if remote is not None:  # the senders keep what they have for later
                await remote.close_inbox()
            if runtime is not None:
                budget = self.config.runtime.agent_shutdown_timeout + 1.0
                try:
                    async with asyncio.timeout(budget):
                        await runtime.aclose()
                except TimeoutError:
                    log.error("the runtime did not stop within %.1fs", budget)
            if agents is not None:
                await agents.aclose()
            if messaging is not None:
                await messaging.aclose()
            if remote is not None:  # send what the agents sent, within the shutdown budget
                await remote.aclose(self.config.runtime.agent_shutdown_timeout)
            if engine is not None:
                engine.close()
        finally:
            try:
                if remote is not None:  # no-op unless something above failed
                    await remote.aclose()
            except Exception:
                log.exception("closing cross-node messaging failed")
            try:
                if cluster is not None:  # its client, then its nats-server child
                    await cluster.aclose()
            except Exception:
                log.exception("closing the cluster link failed")
            try:
                if storage is not None:
                    await storage.aclose()
            finally:
                self.state = NodeState.CLOSED
                # Only a node that started stops: after a failed start, the caller reports the
                # error, and a "node stopped" line before it would read as a clean shutdown.
                if self.started_at is not None:
                    log.info("node stopped")
