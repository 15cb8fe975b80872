"""The shared agent registry over an in-memory bus, in virtual time (explicit ticks)."""

from __future__ import annotations

import asyncio

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from caxton.clock import ManualClock
from caxton.cluster import registry_wire as wire
from caxton.cluster.bus import InMemoryBus
from caxton.cluster.conflicts import Conflict
from caxton.cluster.membership import Member, MemberChange
from caxton.cluster.registry import PAGE, Registry
from tests.cluster.registry_fakes import make_node


def listing(registry: Registry) -> dict[str, tuple[str, str]]:
    """name -> (node, state) of every other node's agents, as `registry` lists them."""
    return {entry.name: (node, entry.state) for node, entry in registry.remote()}


async def gossip(*registries: Registry) -> None:
    """One gossip interval on every node: digests, then the pulls they asked for."""
    for registry in registries:
        await registry.flush()
        await registry.tick()
    for registry in registries:
        await registry.sync()
    for _ in range(3):  # a losing copy is stopped by a job of its registry
        await asyncio.sleep(0)


def change(name: str, incarnation: int, current: str) -> MemberChange:
    member = Member(name, "", "", "dead", 0, incarnation, 0.0)
    return MemberChange(member, "dead", current)  # type: ignore[arg-type]


async def test_nodes_list_each_others_agents_and_owner_is_a_lookup() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, agents_a = make_node(bus, clock, "a")
    b, agents_b = make_node(bus, clock, "b")
    agents_a.deploy("x")
    agents_a.deploy("y")
    agents_b.deploy("z")
    await a.start(ticker=False)
    await b.start(ticker=False)
    await gossip(a, b)
    assert listing(a) == {"z": ("b", "running")}
    assert listing(b) == {"x": ("a", "running"), "y": ("a", "running")}
    assert [a.owner(n) for n in ("x", "y", "z", "nobody")] == ["a", "a", "b", None]
    assert [b.owner(n) for n in ("x", "y", "z")] == ["a", "a", "b"]
    assert (a.count("a"), a.count("b"), b.count("a")) == (2, 1, 2)


async def test_a_change_is_announced_and_applied_without_a_pull() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, agents_a = make_node(bus, clock, "a")
    b, _ = make_node(bus, clock, "b")
    await a.start(ticker=False)
    await b.start(ticker=False)
    await gossip(a, b)
    pulls = b.pulls
    agents_a.deploy("x")
    await a.flush()
    assert listing(b) == {"x": ("a", "running")}
    agents_a.set_state("x", "hibernated")
    await a.flush()
    assert listing(b) == {"x": ("a", "hibernated")}
    agents_a.remove("x")
    await a.flush()
    assert listing(b) == {}
    assert b.owner("x") is None
    assert b.pulls == pulls  # announcements only
    assert a.statistics().announcements_sent == 3


async def test_missed_announcements_are_pulled_after_the_next_digest() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, agents_a = make_node(bus, clock, "a")
    b, _ = make_node(bus, clock, "b")
    await a.start(ticker=False)
    await b.start(ticker=False)
    await gossip(a, b)
    bus.partition({"a"}, {"b"})
    agents_a.deploy("x")
    await a.flush()  # lost
    bus.heal()
    agents_a.deploy("y")
    await a.flush()  # heard, but b is not at its base: it pulls
    await b.sync()
    assert listing(b) == {"x": ("a", "running"), "y": ("a", "running")}


async def test_a_dead_node_stays_listed_a_removed_one_goes_a_restarted_one_is_replaced() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, _ = make_node(bus, clock, "a")
    b, agents_b = make_node(bus, clock, "b")
    agents_b.deploy("x")
    agents_b.deploy("y")
    await a.start(ticker=False)
    await b.start(ticker=False)
    await gossip(a, b)
    a.on_member(change("b", 1, "dead"))
    assert listing(a) == {"x": ("b", "running"), "y": ("b", "running")}
    # b restarts (incarnation 2) with y only
    await b.aclose()
    del agents_b.agents["x"]
    b2, _ = make_node(bus, clock, "b", incarnation=2, agents=agents_b)
    await b2.start(ticker=False)
    await a.sync()
    assert listing(a) == {"y": ("b", "running")}
    assert a.owner("x") is None
    a.on_member(change("b", 2, "removed"))
    assert listing(a) == {}
    assert a.owner("y") is None
    await b2.tick()  # a removed incarnation stays removed
    await a.sync()
    assert listing(a) == {}


async def test_a_joining_node_pulls_a_long_list_in_pages() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, agents_a = make_node(bus, clock, "a")
    for i in range(2 * PAGE + 17):
        agents_a.deploy(f"agent-{i:05}")
    await a.start(ticker=False)
    b, _ = make_node(bus, clock, "b")
    await b.start(ticker=False)
    await a.tick()
    await b.sync()
    assert len(listing(b)) == 2 * PAGE + 17
    assert b.statistics().pulls == 1


async def test_a_name_on_both_sides_of_a_partition_goes_to_the_first_deploy() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, agents_a = make_node(bus, clock, "a")
    b, agents_b = make_node(bus, clock, "b")
    await a.start(ticker=False)
    await b.start(ticker=False)
    await gossip(a, b)
    bus.partition({"a"}, {"b"})
    clock.advance(5)
    agents_b.deploy("x")  # first
    clock.advance(5)
    assert a.hosted_elsewhere("x") is None  # a cannot see b's copy
    agents_a.deploy("x")
    await gossip(a, b)
    seen: list[Conflict] = []
    a.add_conflict_listener(seen.append)
    bus.heal()
    await gossip(a, b)
    await gossip(a, b)
    assert a.owner("x") == b.owner("x") == "b"
    assert agents_a.stopped == ["x"]
    assert agents_b.stopped == []
    assert listing(b)["x"] == ("a", "stopped")  # kept, stopped
    for registry in (a, b):
        (conflict,) = registry.conflicts()
        assert (conflict.name, conflict.winner, conflict.loser) == ("x", "b", "a")
    assert a.conflicts()[0].action == "stopped (kept stored)"
    assert [c.action for c in seen] == ["stopping", "stopped (kept stored)"]
    assert a.statistics().conflicts == 1


async def test_equal_deploy_times_are_settled_by_node_name() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, agents_a = make_node(bus, clock, "a")
    b, agents_b = make_node(bus, clock, "b")
    agents_a.deploy("x")
    agents_b.deploy("x")
    await a.start(ticker=False)
    await b.start(ticker=False)
    await gossip(a, b)
    await gossip(a, b)
    assert a.owner("x") == b.owner("x") == "a"
    assert agents_b.stopped == ["x"]


async def test_a_deploy_is_refused_where_another_node_lists_the_name() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, agents_a = make_node(bus, clock, "a")
    b, _ = make_node(bus, clock, "b")
    agents_a.deploy("x")
    await a.start(ticker=False)
    await b.start(ticker=False)
    await gossip(a, b)
    assert b.hosted_elsewhere("x") == "a"
    assert a.hosted_elsewhere("x") is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
async def test_garbage_on_the_registry_subjects_is_dropped(payload: bytes) -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, agents_a = make_node(bus, clock, "a")
    agents_a.deploy("x")
    await a.start(ticker=False)
    sender = bus.connect("evil")
    await sender.publish(wire.DIGESTS, payload)
    await sender.publish(wire.ANNOUNCEMENTS, payload)
    reply = await sender.request(wire.pull_subject("a"), payload, 1.0)
    if reply:
        page = wire.decode_page(reply)
        assert page.node == "a"
    assert a.owner("x") == "a"
    await a.aclose()


async def test_a_pull_request_with_a_huge_limit_is_capped() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, agents_a = make_node(bus, clock, "a")
    for i in range(6000):
        agents_a.deploy(f"n{i:05}")
    await a.start(ticker=False)
    asker = bus.connect("c")
    reply = await asker.request(
        wire.pull_subject("a"), msgspec.msgpack.encode(wire.PageRequest("", 10**9)), 1.0
    )
    page = wire.decode_page(reply)
    assert 0 < len(page.entries) < 6000
    assert page.more


async def test_a_joining_node_is_greeted_with_digests_at_once() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, agents_a = make_node(bus, clock, "a")
    agents_a.deploy("x")
    await a.start(ticker=False)
    b, _ = make_node(bus, clock, "b")
    await b.start(ticker=False)  # a hears b's first digest ...
    await a.flush()  # ... and answers with its own, before its next gossip tick
    await b.sync()
    assert listing(b) == {"x": ("a", "running")}


async def test_not_synced_until_one_gossip_interval_and_the_pulls_it_asked_for() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, agents_a = make_node(bus, clock, "a")
    agents_a.deploy("x")
    await a.start(ticker=False)
    b, _ = make_node(bus, clock, "b")
    assert b.not_synced() == "the agent registry is not started"
    await b.start(ticker=False)
    assert b.not_synced() is not None  # waits one interval for digests
    await a.tick()  # a's digest: b is to pull
    clock.advance(b.gossip_interval)
    assert b.not_synced() == "the agent registry is pulling the other nodes' lists"
    await b.sync()
    assert b.not_synced() is None
    assert b.owner("x") == "a"
    await a.tick()
    agents_a.deploy("y")
    await a.tick()  # stale again: synced once is synced for good (no flapping /ready)
    assert b.not_synced() is None
