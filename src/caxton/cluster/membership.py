"""`Membership`: who is in the cluster, from heartbeats on the bus.

Every member publishes a heartbeat on `HEARTBEATS` every ``probe_interval`` P (its name,
addresses, agents hosted, incarnation, state) and checks its peers at the same tick. A peer
not heard for more than 3 P (3 missed heartbeats) is ``suspect``; not heard for more than
4 P (the suspicion timeout is one more P) it is ``dead``. Since the check runs every P, a
peer killed with ``kill -9`` is ``dead`` on every member that was hearing it at most 5 P
after the kill (5 s at the seed's ``probe_interval = "1s"``). A heartbeat heard again makes
a suspect or dead peer ``alive`` at once (a healed partition).

The **incarnation** (default: start time in ms) tells one run of a node from the next: an
older one than known is stale and ignored; a newer one is a restart, ``alive`` again.
`Membership.leave` announces ``left`` at once (a graceful stop); a left member stays ``left``
until a new incarnation of it is heard. `Membership.remove` forgets a dead or left member for
good and tells the others (`REMOVALS`): every member that also sees that incarnation dead or
left forgets it and ignores its heartbeats from then on (a member that still hears it keeps
it); a restarted node (a newer incarnation) is welcome again.

A member has **heard itself** (`Membership.heard_self`) once its own heartbeat came back
through the bus: its subscription works end to end (a node counts as joined only then, and
no longer once several of its beats in a row did not come back: `Membership.unheard`).
Every state change is logged, one line each (``member NAME joined (alive)``, ``... is
suspect``, ``dead``, ``left``, ``removed``), and given to the listeners
(`caxton.cluster.telemetry` turns one into the event of the node's event stream).

A ticker that wakes more than P late (the event loop was stalled) does not check its peers
at that tick, whose heartbeats are still unread: a busy node does not suspect the others.
Time comes from the injected `Clock`; the ticker is a service of the member's `TaskSet`, and
tests call `Membership.tick` themselves instead (``start(ticker=False)``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import msgspec

from caxton.clock import SYSTEM_CLOCK, Clock
from caxton.cluster.bus import Bus, Unsubscribe
from caxton.tasks import TaskSet

__all__ = [
    "HEARTBEATS",
    "REMOVALS",
    "STATES",
    "Heartbeat",
    "Member",
    "MemberChange",
    "Membership",
]

_log = logging.getLogger("caxton.cluster.membership")

HEARTBEATS = "caxton.cluster.heartbeat"
REMOVALS = "caxton.cluster.remove"

State = Literal["alive", "suspect", "dead", "left"]
#: Every state, in the order a member goes through them.
STATES: tuple[State, ...] = ("alive", "suspect", "dead", "left")
#: Heartbeats missed before a peer is suspect, and before it is dead (suspicion timeout: 1 more).
SUSPECT_AFTER = 3
DEAD_AFTER = 4


class Heartbeat(msgspec.Struct, frozen=True):
    """What a member publishes every probe interval (msgpack on the wire)."""

    name: str
    incarnation: int
    state: Literal["alive", "left"]
    api: str
    cluster: str
    agents: int


class Removal(msgspec.Struct, frozen=True):
    name: str
    incarnation: int


_encode = msgspec.msgpack.encode
_decode_heartbeat = msgspec.msgpack.Decoder(Heartbeat).decode
_decode_removal = msgspec.msgpack.Decoder(Removal).decode


@dataclass(frozen=True)
class Member:
    """One node as this member sees it; ``since`` is the wall time of the last state change."""

    name: str
    api: str
    cluster: str
    state: State
    agents: int
    incarnation: int
    since: float
    heard: float = field(default=0.0, compare=False)  # monotonic time of the last heartbeat


@dataclass(frozen=True)
class MemberChange:
    """A member changed state: ``previous`` is None when it joined, ``current`` is "removed"
    when it was forgotten."""

    member: Member
    previous: State | None
    current: State | Literal["removed"]


Listener = Callable[[MemberChange], None]


class Membership:
    """This node's heartbeat and its view of the other members."""

    def __init__(
        self,
        node_name: str,
        addresses: tuple[str, str],
        bus: Bus,
        *,
        clock: Clock = SYSTEM_CLOCK,
        probe_interval: float = 1.0,
        agents: Callable[[], int] = lambda: 0,
        incarnation: int | None = None,
    ) -> None:
        if probe_interval <= 0:
            raise ValueError(f"probe_interval must be > 0, not {probe_interval}")
        self.name = node_name
        self.api, self.cluster = addresses
        self.probe_interval = probe_interval
        self.incarnation = incarnation if incarnation is not None else int(clock.wall() * 1000)
        self._bus = bus
        self._clock = clock
        self._agents = agents
        self._peers: dict[str, Member] = {}
        self._removed: dict[str, int] = {}  # name -> newest incarnation removed
        self._listeners: list[Listener] = []
        self._unsubscribe: list[Unsubscribe] = []
        self._tasks = TaskSet("cluster membership")
        self._state: Literal["alive", "left"] = "alive"
        self._since = clock.wall()
        self.started = False
        #: Whether this member's own heartbeat came back through the bus (and when, monotonic).
        self.heard_self = False
        self._sent_when_heard = 0
        self._heard = asyncio.Event()
        #: Heartbeats published and heard, ticks late by more than an interval (for metrics).
        self.sent = self.received = self.stalls = 0

    def members(self) -> list[Member]:
        """Every member known, this one included, by name."""
        me = Member(**msgspec.structs.asdict(self._heartbeat()), since=self._since)
        return sorted([me, *self._peers.values()], key=lambda member: member.name)

    def get(self, name: str) -> Member | None:
        """The peer called `name`, if known."""
        return self._peers.get(name)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` on every state change; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def start(self, *, ticker: bool = True) -> None:
        """Listen to the others, announce this node, and (``ticker``) beat every interval."""
        if self.started:
            raise RuntimeError(f"membership of {self.name} already started")
        try:
            self._unsubscribe.append(await self._bus.subscribe(HEARTBEATS, self._on_heartbeat))
            self._unsubscribe.append(await self._bus.subscribe(REMOVALS, self._on_removal))
            await self._beat()
        except BaseException:
            await self.aclose()
            raise
        self.started = True
        if ticker:
            self._tasks.service(self._run(), name=f"membership ticker of {self.name}")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:  # on a fixed cadence: the time a tick takes does not delay the next one
            due += self.probe_interval
            await asyncio.sleep(max(0.0, due - loop.time()))
            late = loop.time() - due
            if late > self.probe_interval:  # the heartbeats that came meanwhile are unread yet
                self.stalls += 1
                due = loop.time()  # the next check one whole interval from now
                _log.warning(
                    "event loop stalled %.2f s: %s checks its peers next tick", late, self.name
                )
            try:
                await self.tick(check=late <= self.probe_interval)
            except Exception:  # a bus hiccup must not end the heartbeat
                _log.exception("heartbeat of %s failed", self.name)

    async def tick(self, *, check: bool = True) -> None:
        """One probe interval: check the peers (`check`), then publish this node's heartbeat."""
        if check:
            self.check()
        await self._beat()

    def check(self) -> None:
        """Mark the peers not heard for too long suspect or dead."""
        now = self._clock.monotonic()
        for peer in list(self._peers.values()):
            if peer.state in ("left", "dead"):
                continue
            silence = now - peer.heard
            if silence > DEAD_AFTER * self.probe_interval:
                self._set(peer, "dead")
            elif silence > SUSPECT_AFTER * self.probe_interval and peer.state == "alive":
                self._set(peer, "suspect")

    async def leave(self) -> None:
        """Announce ``left`` at once and stop (a graceful shutdown)."""
        try:
            if self.started and self._state == "alive":
                self._state, self._since = "left", self._clock.wall()
                await self._beat()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop beating and listening, without a word (idempotent; `leave` says goodbye)."""
        await self._tasks.aclose()
        unsubscribe, self._unsubscribe = self._unsubscribe, []
        for stop in unsubscribe:
            await stop()

    async def remove(self, name: str) -> Member:
        """Forget the dead or left member `name` for good, here and on the members that also
        see it dead or left; raises LookupError if unknown, ValueError if it is not down."""
        peer = self._peers.get(name)
        if peer is None:
            raise LookupError(f"no member called {name!r}")
        if peer.state not in ("dead", "left"):
            raise ValueError(f"member {name!r} is {peer.state}: only dead or left can be removed")
        self._forget(peer)
        await self._bus.publish(REMOVALS, _encode(Removal(name, peer.incarnation)))
        return peer

    def _heartbeat(self) -> Heartbeat:
        agents = self._agents()
        return Heartbeat(self.name, self.incarnation, self._state, self.api, self.cluster, agents)

    async def _beat(self) -> None:
        self.sent += 1  # before: the beat may come back before publish returns
        try:
            await self._bus.publish(HEARTBEATS, _encode(self._heartbeat()))
        except BaseException:
            self.sent -= 1
            raise

    def _on_heartbeat(self, subject: str, payload: bytes) -> None:
        try:
            beat = _decode_heartbeat(payload)
        except msgspec.DecodeError as error:
            _log.warning("dropped a malformed heartbeat (%d bytes): %s", len(payload), error)
            return
        if beat.name == self.name:
            if beat.incarnation != self.incarnation:
                _log.warning(
                    "another node calls itself %s (incarnation %d)", beat.name, beat.incarnation
                )
            else:
                self._heard_self()
            return
        if beat.incarnation <= self._removed.get(beat.name, -1):
            return  # a removed incarnation stays removed
        self.received += 1
        peer = self._peers.get(beat.name)
        if peer is not None and beat.incarnation < peer.incarnation:
            return  # stale: an older run of that node
        restarted = peer is not None and beat.incarnation > peer.incarnation
        if peer is not None and peer.state == "left" and not restarted:
            return  # left is left until a new incarnation
        now, state = self._clock.monotonic(), beat.state
        known = msgspec.structs.asdict(beat) | {"heard": now}
        if peer is None:
            peer = Member(**known, since=self._clock.wall())
            self._peers[beat.name] = peer
            _log.info(
                "member %s joined (%s)",
                peer.name,
                state,
                extra={"member": peer.name, "state": state},
            )
            self._notify(MemberChange(peer, None, state))
            return
        updated = replace(peer, **(known | {"state": peer.state}))
        self._peers[beat.name] = updated
        if updated.state != state or restarted:
            self._set(updated, state, restarted=restarted)

    @property
    def unheard(self) -> int:
        """Own heartbeats published since the last one heard back (a few in flight are normal;
        more than 3 is a broken subscription, whereas a stalled event loop publishes none)."""
        return self.sent - self._sent_when_heard

    def _heard_self(self) -> None:
        self._sent_when_heard = self.sent
        if not self.heard_self:
            self.heard_self = True
            self._heard.set()
            _log.info("member %s (this node) hears its own heartbeat: joined", self.name)

    async def wait_heard_self(self, within: float) -> bool:
        """Wait up to `within` seconds until this member heard its own heartbeat."""
        try:
            async with asyncio.timeout(within):
                await self._heard.wait()
        except TimeoutError:
            pass
        return self.heard_self

    def _on_removal(self, subject: str, payload: bytes) -> None:
        try:
            removal = _decode_removal(payload)
        except msgspec.DecodeError as error:
            _log.warning("dropped a malformed removal (%d bytes): %s", len(payload), error)
            return
        peer = self._peers.get(removal.name)
        if peer is None or removal.name == self.name:
            return
        if peer.incarnation <= removal.incarnation and peer.state in ("dead", "left"):
            self._forget(peer, removal.incarnation)

    def _set(self, peer: Member, state: State, *, restarted: bool = False) -> None:
        changed = replace(peer, state=state, since=self._clock.wall())
        self._peers[peer.name] = changed
        _log.log(
            logging.WARNING if state in ("suspect", "dead") else logging.INFO,
            "member %s %s %s (was %s)",
            peer.name,
            f"restarted (incarnation {peer.incarnation}) and is" if restarted else "is",
            state,
            peer.state,
            extra={"member": peer.name, "state": state, "incarnation": peer.incarnation},
        )
        self._notify(MemberChange(changed, peer.state, state))

    def _forget(self, peer: Member, incarnation: int | None = None) -> None:
        gone = peer.incarnation if incarnation is None else incarnation
        removed = max(self._removed.get(peer.name, -1), gone)
        self._removed[peer.name] = removed
        del self._peers[peer.name]
        _log.info("member %s removed", peer.name, extra={"member": peer.name, "state": "removed"})
        self._notify(MemberChange(peer, peer.state, "removed"))

    def _notify(self, change: MemberChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                _log.exception("a membership listener failed on %s", change.member.name)
