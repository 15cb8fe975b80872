"""The node: the core services of one Caxton process, without any HTTP.

A `Node` owns the state store and (as later parts land) the agent runtime, the router and the
cluster membership. It knows nothing about aiohttp, Prometheus or the CLI: those leaves call
its methods and read its ``statistics()``.

Lifecycle: ``UNSTARTED -> STARTING -> RUNNING -> DRAINING -> CLOSED``. `start()` may be called
once; `aclose()` is idempotent and always releases the state file, even if starting failed half
way.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass

from caxton.config import Config
from caxton.errors import Error
from caxton.storage import Storage

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

    @property
    def ready(self) -> bool:
        """True when the node accepts work."""
        return self.storage and self.started

    def as_dict(self) -> dict[str, bool]:
        """The checks as a JSON-ready mapping."""
        return {"storage": self.storage, "started": self.started}


class Node:
    """One Caxton node's core services."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state = NodeState.UNSTARTED
        self.started_at: float | None = None
        self._storage: Storage | None = None

    @property
    def storage(self) -> Storage:
        """The open state store (raises if the node is not started)."""
        if self._storage is None:
            raise Error("the node is not started")
        return self._storage

    async def start(self) -> None:
        """Open the state store and start the services; raises on failure."""
        if self.state is not NodeState.UNSTARTED:
            raise Error(f"cannot start a node that is {self.state.value}")
        self.state = NodeState.STARTING
        coordination = self.config.coordination
        try:
            self._storage = await Storage.open(
                coordination.local_state_path, journal_mode=coordination.journal_mode
            )
        except BaseException:
            await self.aclose()
            raise
        self.started_at = time.time()
        self.state = NodeState.RUNNING
        log.info(
            "node started",
            extra={
                "node_id": self._storage.node_id,
                "state_path": str(coordination.local_state_path),
            },
        )

    def readiness(self) -> Readiness:
        """Whether the node is ready for work, and why not."""
        return Readiness(
            storage=self._storage is not None and self.state is NodeState.RUNNING,
            started=self.state is NodeState.RUNNING,
        )

    def begin_drain(self) -> None:
        """Stop accepting new work (readiness turns false); in-flight work goes on."""
        if self.state is NodeState.RUNNING:
            self.state = NodeState.DRAINING

    async def aclose(self) -> None:
        """Stop every service and release the state file. Idempotent."""
        if self.state is NodeState.CLOSED:
            return
        self.state = NodeState.DRAINING
        storage, self._storage = self._storage, None
        try:
            if storage is not None:
                await storage.aclose()
        finally:
            self.state = NodeState.CLOSED
            log.info("node stopped")
