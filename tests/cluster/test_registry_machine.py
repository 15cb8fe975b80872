"""The registry as a state machine: random deploys, removals, state changes, partitions, heals,
restarts, joins and removals of nodes over an `InMemoryBus` in virtual time.

After a heal and two gossip intervals, every running node lists exactly what every other
running node hosts (the truth), no entry of a removed node, and answers `owner` with the
conflict rule's winner among the copies that exist.
"""

from __future__ import annotations

import asyncio

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from caxton.clock import ManualClock
from caxton.cluster.bus import InMemoryBus
from caxton.cluster.conflicts import winner
from caxton.cluster.membership import Member, MemberChange
from caxton.cluster.registry import Registry
from tests.cluster.registry_fakes import FakeAgents, make_node

NODES = ("n0", "n1", "n2")
AGENTS = ("a", "b", "c", "d")
nodes, agents = st.sampled_from(NODES), st.sampled_from(AGENTS)


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.bus = InMemoryBus()
        self.clock = ManualClock()
        self.running: dict[str, tuple[Registry, FakeAgents]] = {}
        self.incarnations = dict.fromkeys(NODES, 0)
        self.removed: set[str] = set()
        self.settled = False

    def run(self, coro: object) -> None:
        self.loop.run_until_complete(coro)  # type: ignore[arg-type]

    def start(self, node: str, agents: FakeAgents | None = None) -> None:
        self.incarnations[node] += 1
        registry, local = make_node(self.bus, self.clock, node, self.incarnations[node], agents)
        self.run(registry.start(ticker=False))
        self.running[node] = (registry, local)

    @initialize(first=st.sets(nodes, min_size=1))
    def begin(self, first: set[str]) -> None:
        for node in sorted(first):
            self.start(node)

    @rule(node=nodes)
    def join(self, node: str) -> None:
        """A node that never ran, or was stopped for good, joins (a removed one: a new run)."""
        if node in self.running:
            return
        self.removed.discard(node)
        self.start(node)
        self.settled = False

    async def _gossip(self) -> None:
        for registry, _ in self.running.values():
            await registry.flush()
            await registry.tick()
        for registry, _ in self.running.values():
            await registry.sync()
        for _ in range(3):
            await asyncio.sleep(0)

    @rule(node=nodes, name=agents)
    def deploy(self, node: str, name: str) -> None:
        if node not in self.running:
            return
        registry, local = self.running[node]
        if name in local.agents or registry.hosted_elsewhere(name) is not None:
            return  # refused, as the agent service refuses it
        self.clock.advance(1)
        local.deploy(name)
        self.settled = False

    @rule(node=nodes, name=agents, state=st.sampled_from(["hibernated", "running", "failed"]))
    def set_state(self, node: str, name: str, state: str) -> None:
        if node in self.running and name in self.running[node][1].agents:
            self.running[node][1].set_state(name, state)
            self.settled = False

    @rule(node=nodes, name=agents)
    def remove(self, node: str, name: str) -> None:
        if node in self.running and name in self.running[node][1].agents:
            self.running[node][1].remove(name)
            self.settled = False

    @rule(flush=st.booleans())
    def gossip(self, flush: bool) -> None:
        self.clock.advance(0.2)
        self.run(self._gossip())
        self.settled = False

    @rule(split=st.sets(nodes))
    def partition(self, split: set[str]) -> None:
        self.bus.partition(split, set(NODES) - split)
        self.settled = False

    @rule(node=nodes)
    def restart(self, node: str) -> None:
        if node not in self.running:
            return
        registry, local = self.running.pop(node)
        self.run(registry.aclose())
        self.start(node, local)
        self.settled = False

    @rule(node=nodes)
    def forget(self, node: str) -> None:
        """Stop ``node`` for good and remove it from membership everywhere."""
        if node not in self.running or len(self.running) == 1:
            return
        registry, _ = self.running.pop(node)
        self.run(registry.aclose())
        self.removed.add(node)
        member = Member(node, "", "", "dead", 0, self.incarnations[node], 0.0)
        for other, _ in self.running.values():
            other.on_member(MemberChange(member, "dead", "removed"))
        self.settled = False

    @rule()
    def heal_and_settle(self) -> None:
        self.bus.heal()
        for _ in range(3):
            self.clock.advance(0.2)
            self.run(self._gossip())
        self.settled = True

    @invariant()
    def converged_once_settled(self) -> None:
        if not self.settled:
            return
        truth = {node: dict(local.agents) for node, (_, local) in self.running.items()}
        for node, (registry, _) in self.running.items():
            seen: dict[str, dict[str, str]] = {}
            for host, entry in registry.remote():
                seen.setdefault(host, {})[entry.name] = entry.state
            want = {
                host: {name: s.state for name, s in hosted.items()}
                for host, hosted in truth.items()
                if host != node
            }
            assert {h: e for h, e in seen.items() if e} == {h: e for h, e in want.items() if e}
            for name in AGENTS:
                copies = [
                    (host, hosted[name].created_at)
                    for host, hosted in truth.items()
                    if name in hosted
                ]
                assert registry.owner(name) == (winner(copies) if copies else None)

    def teardown(self) -> None:
        for registry, _ in self.running.values():
            self.run(registry.aclose())
        self.loop.close()


RegistryMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestRegistryMachine = RegistryMachine.TestCase
