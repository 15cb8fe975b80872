"""`Hosts`: which nodes list each agent name, the owner of each, and the conflicts.

The registry tells it each entry it adds or drops (`Hosts.host`, `Hosts.unhost`); `owners`
is the dict `Registry.owner` reads (name -> the node that hosts it, the conflict rule's winner
when two do). A name listed by two nodes is a `Conflict`, recorded once per (name, winner,
loser) and logged; on the loser's node ``stop_local`` stops its copy (a job of the registry's
`TaskSet`), and the conflict is recorded again with what became of it. Listeners (the node's
event stream) hear of each record.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace

from caxton.clock import Clock
from caxton.cluster.conflicts import Conflict, winner
from caxton.tasks import TaskSet

__all__ = ["CONFLICTS_KEPT", "Hosts"]

_log = logging.getLogger("caxton.cluster.registry")

#: Conflicts kept (the newest).
CONFLICTS_KEPT = 1000


class Hosts:
    """Name -> hosting nodes, owners and conflicts, as this node (``node``) sees them."""

    def __init__(self, node: str, clock: Clock, tasks: TaskSet) -> None:
        self.node = node
        self._clock = clock
        self._tasks = tasks
        self._hosts: dict[str, dict[str, float]] = {}  # name -> {node: deployed_at}
        #: name -> the node that hosts it (the winner if two do).
        self.owners: dict[str, str] = {}
        self._conflicts: deque[Conflict] = deque(maxlen=CONFLICTS_KEPT)
        self._conflicted: set[tuple[str, str, str]] = set()
        self._listeners: list[Callable[[Conflict], None]] = []
        #: Stops this node's copy of an agent that lost a conflict (set by the node).
        self.stop_local: Callable[[str], Awaitable[object]] | None = None

    def elsewhere(self, name: str) -> str | None:
        """A node other than this one that lists ``name`` (the winner among them)."""
        hosts = self._hosts.get(name)
        if not hosts:
            return None
        others = [(node, at) for node, at in hosts.items() if node != self.node]
        return winner(others) if others else None

    def conflicts(self) -> list[Conflict]:
        """The conflicts seen, oldest first (the last `CONFLICTS_KEPT`)."""
        return list(self._conflicts)

    @property
    def conflict_count(self) -> int:
        """Conflicts seen since start (each (name, winner, loser) once)."""
        return len(self._conflicted)

    def add_listener(self, listener: Callable[[Conflict], None]) -> None:
        """Call ``listener`` for each new conflict, and again when its action changes."""
        self._listeners.append(listener)

    def host(self, name: str, node: str, deployed_at: float) -> None:
        hosts = self._hosts.get(name)
        if hosts is None:
            self._hosts[name] = {node: deployed_at}
            self.owners[name] = node
            return
        if hosts.get(node) == deployed_at:
            return
        hosts[node] = deployed_at
        self._settle(name, hosts)

    def unhost(self, name: str, node: str) -> None:
        hosts = self._hosts.get(name)
        if hosts is None or hosts.pop(node, None) is None:
            return
        if not hosts:
            del self._hosts[name]
            self.owners.pop(name, None)
            return
        self._settle(name, hosts)

    def _settle(self, name: str, hosts: dict[str, float]) -> None:
        won = winner(hosts.items())
        self.owners[name] = won
        for loser, deployed_at in hosts.items():
            if loser != won:
                self._conflict(name, won, hosts[won], loser, deployed_at)

    def _conflict(self, name: str, won: str, won_at: float, lost: str, lost_at: float) -> None:
        key = (name, won, lost)
        if key in self._conflicted:
            return
        self._conflicted.add(key)
        mine = lost == self.node
        conflict = Conflict(
            name,
            won,
            lost,
            won_at,
            lost_at,
            self._clock.wall(),
            "stopping" if mine else "stopped by its node (kept stored)",
        )
        self._record(conflict)
        _log.warning(
            "registry conflict: agent %s is on %s and %s; %s keeps it (deployed first), the copy "
            "on %s is stopped and kept stored",
            name,
            won,
            lost,
            won,
            lost,
            extra={"agent": name, "winner": won, "loser": lost},
        )
        if mine:
            self._tasks.start(self._lose(conflict), f"registry conflict of {name}")

    async def _lose(self, conflict: Conflict) -> None:
        action = "stopped (kept stored)"
        try:
            if self.stop_local is not None:
                await self.stop_local(conflict.name)
        except Exception as error:
            action = f"stop failed: {error}"
            _log.error(
                "registry conflict: stopping the losing copy of %s failed: %s", conflict.name, error
            )
        self._record(replace(conflict, action=action))

    def _record(self, conflict: Conflict) -> None:
        kept = [
            c
            for c in self._conflicts
            if (c.name, c.winner, c.loser) != (conflict.name, conflict.winner, conflict.loser)
        ]
        if len(kept) != len(self._conflicts):
            self._conflicts.clear()
            self._conflicts.extend(kept)
        self._conflicts.append(conflict)
        for listener in list(self._listeners):
            try:
                listener(conflict)
            except Exception:
                _log.exception("a registry conflict listener failed")
