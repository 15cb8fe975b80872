"""Membership as a state machine: random joins, beats, crashes, leaves, restarts, partitions,
heals, removals and time, over an `InMemoryBus` in virtual time (ManualClock).

A model records, for every running member (observer) and every other node, the last heartbeat
the observer heard (incarnation, time, alive or left) and when the observer last checked its
peers. From it the invariants after every step:

* a node heard within 3 probe intervals of the observer's last check is ``alive`` there;
* a node not heard for more than 4 intervals at the observer's last check is ``dead`` there
  (so a crashed node is dead on every member that ticks each interval within 5 intervals);
* a node heard saying ``left`` is ``left`` (until a new incarnation is heard);
* a removed incarnation is never listed again by the member that removed it, nor by the members
  that applied the removal; a restart (new incarnation) is welcome again. Tombstones are in
  memory: a restarted observer starts with none;
* and, as a whole, every observer's view equals the model's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from caxton.clock import ManualClock
from caxton.cluster.bus import InMemoryBus
from caxton.cluster.membership import DEAD_AFTER, SUSPECT_AFTER, Membership

P = 1.0
NAMES = ("n0", "n1", "n2", "n3")
names = st.sampled_from(NAMES)


@dataclass
class Heard:
    incarnation: int
    time: float
    state: str  # "alive" | "left": what the beat said


class MembershipMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.bus = InMemoryBus()
        self.clock = ManualClock()
        self.running: dict[str, Membership] = {}
        self.incarnations = dict.fromkeys(NAMES, 0)
        self.heard: dict[tuple[str, str], Heard] = {}
        self.removed: dict[tuple[str, str], int] = {}
        self.checked: dict[str, float] = {}

    def teardown(self) -> None:
        for membership in self.running.values():
            self.loop.run_until_complete(membership.aclose())
        self.loop.close()

    # -- the model --------------------------------------------------------------------------

    def expected(self, observer: str, node: str) -> str | None:
        heard = self.heard.get((observer, node))
        if heard is None:
            return None
        if heard.state == "left":
            return "left"
        checked = self.checked.get(observer)
        if checked is None or checked <= heard.time:
            return "alive"
        silence = checked - heard.time
        if silence > DEAD_AFTER * P:
            return "dead"
        return "suspect" if silence > SUSPECT_AFTER * P else "alive"

    def beat_heard(self, sender: str, state: str) -> None:
        incarnation = self.running[sender].incarnation
        for observer in self.running:
            if observer == sender or not self.bus.can_hear(observer, sender):
                continue
            if incarnation <= self.removed.get((observer, sender), -1):
                continue
            known = self.heard.get((observer, sender))
            if known is not None and known.incarnation == incarnation and known.state == "left":
                continue
            self.heard[(observer, sender)] = Heard(incarnation, self.clock.monotonic(), state)

    def forget(self, observer: str, node: str, incarnation: int) -> None:
        self.heard.pop((observer, node), None)
        self.removed[(observer, node)] = max(self.removed.get((observer, node), -1), incarnation)

    # -- rules ----------------------------------------------------------------------------------

    @initialize(first=st.sets(names, min_size=2))
    def form(self, first: set[str]) -> None:
        for name in sorted(first):
            self.start(name)

    @rule(data=st.data(), quarters=st.integers(min_value=1, max_value=6))
    def round(self, data: st.DataObject, quarters: int) -> None:
        """Time passes and every running member ticks once, in some order (a normal period)."""
        self.advance(quarters)
        for name in data.draw(st.permutations(sorted(self.running))):
            self.tick(name)

    @rule(name=names)
    def start(self, name: str) -> None:
        if name in self.running:
            return
        self.incarnations[name] += 1
        membership = Membership(
            name,
            (f"{name}:8080", f"{name}:7946"),
            self.bus.connect(name),
            clock=self.clock,
            probe_interval=P,
            incarnation=self.incarnations[name],
        )
        for key in [key for key in self.heard if key[0] == name]:
            del self.heard[key]
        for key in [key for key in self.removed if key[0] == name]:
            del self.removed[key]
        self.checked.pop(name, None)
        self.running[name] = membership
        self.loop.run_until_complete(membership.start(ticker=False))
        self.beat_heard(name, "alive")

    @rule(name=names)
    def tick(self, name: str) -> None:
        membership = self.running.get(name)
        if membership is None:
            return
        self.loop.run_until_complete(membership.tick())
        self.checked[name] = self.clock.monotonic()
        self.beat_heard(name, "alive")

    @rule(name=names)
    def crash(self, name: str) -> None:
        membership = self.running.pop(name, None)
        if membership is not None:
            self.loop.run_until_complete(membership.aclose())

    @rule(name=names)
    def leave(self, name: str) -> None:
        membership = self.running.get(name)
        if membership is None:
            return
        self.beat_heard(name, "left")
        del self.running[name]
        self.loop.run_until_complete(membership.leave())

    @rule(quarters=st.integers(min_value=1, max_value=10))
    def advance(self, quarters: int) -> None:
        self.clock.advance(quarters * P / 4)

    @rule(side=st.sets(names))
    def partition(self, side: set[str]) -> None:
        self.bus.partition(side, set(NAMES) - side)

    @rule(side=st.sets(names, min_size=1), periods=st.integers(min_value=3, max_value=6))
    def split_for(self, side: set[str], periods: int) -> None:
        """A partition that lasts `periods` normal periods, then heals."""
        self.partition(side)
        for _ in range(periods):
            self.advance(4)
            for name in sorted(self.running):
                self.tick(name)
        self.heal()

    @rule()
    def heal(self) -> None:
        self.bus.heal()

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        observer = data.draw(st.sampled_from(sorted(self.running)))
        membership = self.running[observer]
        down = [m for m in membership.members() if m.state in ("dead", "left")]
        if not down:
            return
        node = data.draw(st.sampled_from(down))
        self.loop.run_until_complete(membership.remove(node.name))
        self.forget(observer, node.name, node.incarnation)
        for other in self.running:
            if other in (observer, node.name) or not self.bus.can_hear(other, observer):
                continue
            heard = self.heard.get((other, node.name))
            if (
                heard is not None
                and heard.incarnation <= node.incarnation
                and self.expected(other, node.name) in ("dead", "left")
            ):
                self.forget(other, node.name, node.incarnation)

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def views_follow_the_rules(self) -> None:
        now = self.clock.monotonic()
        for observer, membership in self.running.items():
            for node in NAMES:
                if node == observer:
                    continue
                seen = membership.get(node)
                heard = self.heard.get((observer, node))
                checked = self.checked.get(observer)
                tombstone = self.removed.get((observer, node), -1)
                if seen is not None:
                    assert seen.incarnation > tombstone, f"{observer} lists removed {node}"
                if heard is None:
                    assert seen is None, f"{observer} lists {node} it never heard"
                    continue
                assert seen is not None, f"{observer} lost {node}"
                assert seen.incarnation == heard.incarnation
                if heard.state == "left":
                    assert seen.state == "left", f"{observer}: left {node} is {seen.state}"
                elif now - heard.time <= SUSPECT_AFTER * P:
                    assert seen.state == "alive", f"{observer}: {node} heard yet {seen.state}"
                elif checked is not None and checked - heard.time > DEAD_AFTER * P:
                    assert seen.state == "dead", f"{observer}: silent {node} is {seen.state}"
                assert seen.state == self.expected(observer, node)

    @invariant()
    def each_member_lists_itself_first_class(self) -> None:
        for name, membership in self.running.items():
            me = [m for m in membership.members() if m.name == name]
            assert len(me) == 1
            assert me[0].state == "alive"
            assert me[0].incarnation == self.incarnations[name]


MembershipMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=50, deadline=None
)
TestMembershipMachine = MembershipMachine.TestCase
