"""A node's agents as the registry sees them, without wasm: a dict (for in-memory tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

from caxton.agents.changes import AgentSummary
from caxton.clock import ManualClock
from caxton.cluster.bus import InMemoryBus
from caxton.cluster.registry import Registry


@dataclass
class FakeAgents:
    """`LocalAgents` over a dict; `deploy`, `set_state`, `remove` tell the registry."""

    clock: ManualClock
    agents: dict[str, AgentSummary] = field(default_factory=dict)
    registry: Registry | None = None
    stopped: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return sorted(self.agents)

    def summary(self, name: str) -> AgentSummary | None:
        return self.agents.get(name)

    def deploy(self, name: str, state: str = "running") -> None:
        now = self.clock.wall()
        self.agents[name] = AgentSummary(name, state, 1, now, now)
        self._tell(name)

    def set_state(self, name: str, state: str) -> None:
        old = self.agents[name]
        self.agents[name] = AgentSummary(
            name, state, old.version, old.created_at, self.clock.wall()
        )
        self._tell(name)

    def remove(self, name: str) -> None:
        del self.agents[name]
        self._tell(name)

    async def stop(self, name: str) -> None:
        self.stopped.append(name)
        self.set_state(name, "stopped")

    def _tell(self, name: str) -> None:
        if self.registry is not None:
            self.registry.changed(name)


def make_node(
    bus: InMemoryBus,
    clock: ManualClock,
    name: str,
    incarnation: int = 1,
    agents: FakeAgents | None = None,
) -> tuple[Registry, FakeAgents]:
    local = agents if agents is not None else FakeAgents(clock)
    registry = Registry(name, incarnation, bus.connect(name), local=local, clock=clock)
    local.registry = registry
    registry.stop_local = local.stop
    return registry, local
