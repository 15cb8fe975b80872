"""Membership over an in-memory bus, in virtual time (ManualClock, explicit ticks)."""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec
import pytest

from caxton.clock import ManualClock
from caxton.cluster.bus import InMemoryBus, MemberBus, subject_matches
from caxton.cluster.membership import HEARTBEATS, Heartbeat, MemberChange, Membership

P = 1.0  # probe interval


def member(bus: InMemoryBus, clock: ManualClock, name: str, incarnation: int = 1) -> Membership:
    return Membership(
        name,
        (f"{name}:8080", f"{name}:7946"),
        bus.connect(name),
        clock=clock,
        probe_interval=P,
        agents=lambda: len(name),
        incarnation=incarnation,
    )


def states(membership: Membership) -> dict[str, str]:
    return {m.name: m.state for m in membership.members() if m.name != membership.name}


async def test_members_see_each_other_with_addresses_and_agents() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, b = member(bus, clock, "a"), member(bus, clock, "b")
    await a.start(ticker=False)
    await b.start(ticker=False)  # a hears b's first beat at once
    await a.tick()  # and b hears a's
    assert states(a) == {"b": "alive"}
    assert states(b) == {"a": "alive"}
    seen = b.get("a")
    assert seen is not None
    assert (seen.api, seen.cluster, seen.agents, seen.incarnation) == ("a:8080", "a:7946", 1, 1)
    assert seen.since == clock.wall()
    assert [m.name for m in a.members()] == ["a", "b"]


async def test_silent_peer_is_suspect_after_3_missed_beats_and_dead_within_5_intervals() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, b = member(bus, clock, "a"), member(bus, clock, "b")
    await a.start(ticker=False)
    await b.start(ticker=False)
    changes: list[MemberChange] = []
    a.add_listener(changes.append)
    clock.advance(0.01)  # b is "killed" just after its beat
    seen: dict[int, str] = {}
    for second in range(1, 7):
        clock.advance(P)
        await a.tick()
        seen[second] = states(a)["b"]
    assert seen == {1: "alive", 2: "alive", 3: "suspect", 4: "dead", 5: "dead", 6: "dead"}
    assert [(c.previous, c.current) for c in changes] == [("alive", "suspect"), ("suspect", "dead")]
    dead = a.get("b")
    assert dead is not None
    assert dead.since == clock.wall() - 2 * P  # when it became dead


async def test_a_beat_heard_again_makes_a_dead_peer_alive() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, b = member(bus, clock, "a"), member(bus, clock, "b")
    await a.start(ticker=False)
    await b.start(ticker=False)
    await a.tick()
    bus.partition({"a"}, {"b"})
    for _ in range(6):
        clock.advance(P)
        await a.tick()
        await b.tick()
    assert states(a) == {"b": "dead"}
    assert states(b) == {"a": "dead"}
    bus.heal()
    await b.tick()
    await a.tick()
    assert states(a) == {"b": "alive"}
    assert states(b) == {"a": "alive"}


async def test_leave_is_announced_at_once_and_left_is_left() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, b = member(bus, clock, "a"), member(bus, clock, "b")
    await a.start(ticker=False)
    await b.start(ticker=False)
    await b.leave()
    assert states(a) == {"b": "left"}
    for _ in range(10):
        clock.advance(P)
        await a.tick()
    assert states(a) == {"b": "left"}  # never "dead"
    await bus.connect("b").publish(HEARTBEATS, _beat_of(b))  # a stale beat of that run
    assert states(a) == {"b": "left"}


def _beat_of(membership: Membership) -> bytes:
    beat = Heartbeat(membership.name, membership.incarnation, "alive", "x", "y", 0)
    return msgspec.msgpack.encode(beat)


async def test_a_restart_with_a_new_incarnation_is_alive_and_stale_beats_are_ignored() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, b = member(bus, clock, "a"), member(bus, clock, "b", incarnation=1)
    await a.start(ticker=False)
    await b.start(ticker=False)
    await b.leave()
    b2 = member(bus, clock, "b", incarnation=2)
    await b2.start(ticker=False)
    assert states(a) == {"b": "alive"}
    await bus.connect("b").publish(HEARTBEATS, _beat_of(b))  # incarnation 1: stale
    seen = a.get("b")
    assert seen is not None
    assert (seen.state, seen.incarnation) == ("alive", 2)


async def test_remove_forgets_a_dead_member_everywhere_until_it_restarts() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, b, c = (member(bus, clock, name) for name in "abc")
    for m in (a, b, c):
        await m.start(ticker=False)
    await c.aclose()  # crashes: no word
    for _ in range(5):
        clock.advance(P)
        await a.tick()
        await b.tick()
    with pytest.raises(ValueError, match="'b' is alive"):
        await a.remove("b")
    with pytest.raises(LookupError):
        await a.remove("zz")
    removed: list[MemberChange] = []
    b.add_listener(removed.append)
    await a.remove("c")
    assert states(a) == {"b": "alive"}
    assert states(b) == {"a": "alive"}  # b saw c dead too, so it forgot it as well
    assert [(c.member.name, c.current) for c in removed] == [("c", "removed")]
    await bus.connect("c").publish(HEARTBEATS, _beat_of(c))  # a late beat of the removed run
    assert "c" not in states(a)
    assert "c" not in states(b)
    c2 = member(bus, clock, "c", incarnation=2)
    await c2.start(ticker=False)
    assert states(a) == {"b": "alive", "c": "alive"}


async def test_a_member_that_still_hears_a_node_keeps_it_after_a_remote_remove() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a, b, c = (member(bus, clock, name) for name in "abc")
    for m in (a, b, c):
        await m.start(ticker=False)
    await a.tick()
    bus.partition({"a"}, {"b", "c"})
    for _ in range(5):
        clock.advance(P)
        for m in (a, b, c):
            await m.tick()
    assert states(a) == {"b": "dead", "c": "dead"}
    bus.heal()
    await a.remove("c")  # b still hears c: keeps it
    assert states(b) == {"a": "dead", "c": "alive"}


async def test_malformed_heartbeats_are_logged_and_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a = member(bus, clock, "a")
    await a.start(ticker=False)
    with caplog.at_level(logging.WARNING, logger="caxton.cluster.membership"):
        await bus.connect("x").publish(HEARTBEATS, b"\x93not a heartbeat")
    assert "dropped a malformed heartbeat" in caplog.text
    assert states(a) == {}


async def test_the_ticker_beats_on_its_own_and_stops_on_close() -> None:
    bus = InMemoryBus()
    a = Membership("a", ("a:1", "a:2"), bus.connect("a"), probe_interval=0.01)
    b = Membership("b", ("b:1", "b:2"), bus.connect("b"), probe_interval=0.01)
    await a.start()
    await b.start()
    await asyncio.sleep(0.1)
    assert a.sent >= 3
    assert states(b) == {"a": "alive"}
    await a.aclose()
    await b.aclose()
    sent = a.sent
    await asyncio.sleep(0.05)
    assert a.sent == sent


@pytest.mark.parametrize(
    ("pattern", "subject", "match"),
    [
        ("a.b", "a.b", True),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        ("a.b", "a.c", False),
        ("a.b.c", "a.b", False),
    ],
)
def test_subjects_match_as_nats_matches_them(pattern: str, subject: str, match: bool) -> None:
    assert subject_matches(pattern, subject) is match


class _BrokenBus(MemberBus):
    async def publish(self, subject: str, payload: bytes) -> None:
        raise ConnectionError("the bus is down")


async def test_start_and_leave_clean_up_when_the_bus_fails() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a = member(bus, clock, "a")
    b = Membership("b", ("b:1", "b:2"), _BrokenBus(bus, "b"), clock=clock, probe_interval=P)
    await a.start(ticker=False)
    with pytest.raises(ConnectionError):
        await b.start(ticker=False)  # a failed start leaves nothing behind
    await a.tick()
    assert states(b) == {}
    assert not b.started
    b._bus = bus.connect("b")  # the bus is back
    await b.start(ticker=False)
    b._bus = _BrokenBus(bus, "b")  # and down again
    with pytest.raises(ConnectionError, match="the bus is down"):
        await b.leave()
    await a.tick()
    assert states(b) == {}  # b stopped listening all the same


async def test_a_stalled_event_loop_does_not_make_the_peers_suspect() -> None:
    bus = InMemoryBus()
    a = Membership("a", ("a:1", "a:2"), bus.connect("a"), probe_interval=0.1)
    b = Membership("b", ("b:1", "b:2"), bus.connect("b"), probe_interval=0.1)
    changes: list[MemberChange] = []
    await b.start(ticker=False)
    await a.start()
    await asyncio.sleep(0)  # a's ticker runs up to its first sleep
    await b.tick()
    a.add_listener(changes.append)
    time.sleep(0.6)  # noqa: ASYNC251 -- the stall under test: 6 intervals with nothing read
    await asyncio.sleep(0.01)  # a's ticker wakes first, late
    await b.tick()  # then b's heartbeat, which was waiting, is read
    await a.aclose()
    assert a.stalls == 1
    assert changes == []
    assert states(a) == {"b": "alive"}


async def test_a_member_hears_itself_until_its_subscription_breaks() -> None:
    bus, clock = InMemoryBus(), ManualClock()
    a = member(bus, clock, "a")
    assert not a.heard_self
    await a.start(ticker=False)  # its first beat comes back at once on this bus
    assert (a.heard_self, a.unheard) == (True, 0)
    await a._unsubscribe[0]()  # its heartbeat subscription is gone
    for _ in range(4):
        clock.advance(P)
        await a.tick()
    assert (a.heard_self, a.unheard) == (True, 4)


async def test_each_change_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="caxton.cluster.membership")
    bus, clock = InMemoryBus(), ManualClock()
    a, b = member(bus, clock, "a"), member(bus, clock, "b", incarnation=1)
    await a.start(ticker=False)
    await b.start(ticker=False)
    for _ in range(5):  # b is silent
        clock.advance(P)
        await a.tick()
    await a.remove("b")
    b2 = member(bus, clock, "b", incarnation=2)
    await b2.start(ticker=False)  # a removed b's first run; this one is new
    b3 = member(bus, clock, "b", incarnation=3)
    await b3.start(ticker=False)  # restarted again while alive
    await b3.leave()
    said = [  # what the others log of b: only a has seen all of it
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "caxton.cluster.membership" and getattr(r, "member", None) == "b"
    ]
    assert said == [
        ("INFO", "member b joined (alive)"),
        ("WARNING", "member b is suspect (was alive)"),
        ("WARNING", "member b is dead (was suspect)"),
        ("INFO", "member b removed"),
        ("INFO", "member b joined (alive)"),
        ("INFO", "member b restarted (incarnation 3) and is alive (was alive)"),
        ("INFO", "member b is left (was alive)"),
    ]
