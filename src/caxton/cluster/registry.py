"""`Registry`: every agent of the cluster and the node that hosts it, with no quorum.

Each node is the authority for the agents it hosts. Its list has a version counter (within
its incarnation, the one of its membership heartbeat): every change the agent service or the
runtime reports (`caxton.agents.changes`) is batched for a moment and announced as the
entries that changed between two versions. Every ``gossip_interval`` each node publishes a
digest (node, incarnation, version, count); a peer whose copy is older, or that missed an
announcement (its copy is not at the announcement's base), pulls the whole list from that
node in pages. A node that hears a node it did not know (or a new run of it) publishes its own
digest at once, so a joining node pulls every list right away. So a node that joins, restarts
or heals converges in one gossip interval plus one pull at most, whatever it missed, and no
node waits for another.

Entries of a node that membership reports ``dead`` or ``left`` stay listed (its agents come
back with it); a node removed from membership (``caxton cluster remove``) loses its entries;
a node that restarts (a new incarnation) has its entries replaced by its new list.

`Registry.owner` is a dict lookup (cross-node messaging asks it per message). A name listed by
two nodes is a conflict, settled by `caxton.cluster.conflicts.winner` on every node alike:
``owner`` answers the winner, the loser's node stops its copy (``stop_local``), and each node
records the conflict and tells its listeners (log line, event stream).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import msgspec

from caxton.clock import SYSTEM_CLOCK, Clock
from caxton.cluster import registry_wire as wire
from caxton.cluster.bus import Bus, NoResponders, Unsubscribe
from caxton.cluster.conflicts import Conflict
from caxton.cluster.hosts import Hosts
from caxton.cluster.membership import MemberChange
from caxton.cluster.registry_views import Views
from caxton.tasks import TaskSet

__all__ = ["LocalAgents", "Registry", "RegistryStatistics"]

_log = logging.getLogger("caxton.cluster.registry")

#: Entries per pulled page (about 50 B each on the wire), and the most a request may ask.
PAGE = 2000
PAGE_MAX = 5000
#: An announcement carries at most this many changes; a larger batch is left to the digest.
ANNOUNCE_MAX = 1000
#: Seconds a pull of one page may take.
PULL_TIMEOUT = 5.0
#: Seconds between two looks of `Registry.wait_synced`.
SYNC_POLL = 0.02


class _Summary(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def created_at(self) -> float: ...
    @property
    def updated_at(self) -> float: ...


class LocalAgents(Protocol):
    """This node's agents (`caxton.agents.AgentService` is one)."""

    def names(self) -> list[str]: ...
    def summary(self, name: str) -> _Summary | None: ...


@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    """For the metrics: entries by node, conflicts seen, pulls and announcements."""

    entries: dict[str, int]
    conflicts: int
    pulls: int
    pull_failures: int
    announcements_sent: int
    announcements_received: int


def _entry(summary: _Summary) -> wire.Entry:
    return wire.Entry(
        summary.name, summary.state, summary.version, summary.created_at, summary.updated_at
    )


class Registry:
    """This node's view of where every agent of the cluster lives (module docstring)."""

    def __init__(
        self,
        node: str,
        incarnation: int,
        bus: Bus,
        *,
        local: LocalAgents,
        clock: Clock = SYSTEM_CLOCK,
        gossip_interval: float = 0.2,
        announce_delay: float = 0.01,
    ) -> None:
        if gossip_interval <= 0:
            raise ValueError(f"gossip_interval must be > 0, not {gossip_interval}")
        self.node = node
        self.incarnation = incarnation
        self.gossip_interval = gossip_interval
        self.announce_delay = announce_delay
        self._bus = bus
        self._local = local
        self._clock = clock
        self._mine: dict[str, wire.Entry] = {}
        self._version = 0
        self._sorted: tuple[int, list[str]] = (-1, [])
        self._tasks = TaskSet("cluster registry", log=_log)
        self.hosts = Hosts(node, clock, self._tasks)
        self._owners = self.hosts.owners  # the same dict: `owner` is one lookup
        self._pull = asyncio.Event()
        self._views = Views(node, self.hosts, self._pull.set)
        self._dirty: set[str] = set()
        self._greet = False  # a new node was heard: publish this node's digest now
        self._announce = asyncio.Event()
        self._unsubscribe: list[Unsubscribe] = []
        self.started = False
        self._started_at = 0.0
        self._synced = False
        self._pulling = False
        self.pulls = self.pull_failures = self.sent = self.received = 0

    # -- queries (loop thread; dict lookups) ----------------------------------------------------

    def owner(self, agent: str) -> str | None:
        """The node that hosts ``agent`` (the winner if two do); None if none is known."""
        return self._owners.get(agent)

    def hosted_elsewhere(self, agent: str) -> str | None:
        """A node other than this one that lists ``agent`` (a deploy here would duplicate it)."""
        return self.hosts.elsewhere(agent)

    def remote(self, node: str | None = None) -> Iterator[tuple[str, wire.Entry]]:
        """(node, entry) of every agent listed by other nodes (of ``node`` only, if given)."""
        return self._views.remote(node)

    def count(self, node: str) -> int:
        """How many agents ``node`` lists (0 if unknown)."""
        return len(self._mine) if node == self.node else self._views.count(node)

    def nodes(self) -> list[str]:
        """Every node whose list this node holds, itself included."""
        return sorted({self.node, *self._views.nodes()})

    def conflicts(self) -> list[Conflict]:
        """The conflicts this node saw, oldest first (the last `CONFLICTS_KEPT`)."""
        return self.hosts.conflicts()

    def add_conflict_listener(self, listener: Callable[[Conflict], None]) -> None:
        """Call ``listener`` for each new conflict, and again when its action changes."""
        self.hosts.add_listener(listener)

    @property
    def stop_local(self) -> Callable[[str], Awaitable[object]] | None:
        """Stops this node's copy of an agent that lost a conflict (set by the node)."""
        return self.hosts.stop_local

    @stop_local.setter
    def stop_local(self, stop: Callable[[str], Awaitable[object]] | None) -> None:
        self.hosts.stop_local = stop

    def not_synced(self) -> str | None:
        """Why this node's copy may still miss other nodes' agents (None once it has waited
        one ``gossip_interval`` for their digests and pulled what they announced; it stays
        None from then on). A join check: ``/ready`` waits for it."""
        if self._synced:
            return None
        if not self.started:
            return "the agent registry is not started"
        waited = self._clock.monotonic() - self._started_at
        if waited < self.gossip_interval:
            return "the agent registry waits one gossip_interval for the other nodes' digests"
        if self._views.stale or self._pulling:
            return "the agent registry is pulling the other nodes' lists"
        self._synced = True
        return None

    async def wait_synced(self, within: float) -> bool:
        """Wait until `not_synced` is None, at most ``within`` seconds; whether it is."""
        for _ in range(max(1, round(within / SYNC_POLL))):
            if self.not_synced() is None:
                return True
            await asyncio.sleep(SYNC_POLL)
        return self.not_synced() is None

    def statistics(self) -> RegistryStatistics:
        entries = self._views.sizes()
        entries[self.node] = len(self._mine)
        return RegistryStatistics(
            entries=entries,
            conflicts=self.hosts.conflict_count,
            pulls=self.pulls,
            pull_failures=self.pull_failures,
            announcements_sent=self.sent,
            announcements_received=self.received,
        )

    # -- start and stop ----------------------------------------------------------------------

    async def start(self, *, ticker: bool = True) -> None:
        """List this node's agents, listen to the others, answer pulls, publish a digest; with
        ``ticker`` also announce, gossip and pull in the background."""
        for name in self._local.names():
            summary = self._local.summary(name)
            if summary is not None:
                self._mine[name] = _entry(summary)
                self.hosts.host(name, self.node, summary.created_at)
        self._version = 1
        try:
            bus = self._bus
            self._unsubscribe.append(await bus.subscribe(wire.DIGESTS, self._on_digest))
            self._unsubscribe.append(await bus.subscribe(wire.ANNOUNCEMENTS, self._on_announcement))
            self._unsubscribe.append(await bus.serve(wire.pull_subject(self.node), self._serve))
            await self.tick()
        except BaseException:
            await self.aclose()
            raise
        self.started = True
        self._started_at = self._clock.monotonic()
        if ticker:
            self._tasks.service(self._gossip(), f"registry gossip of {self.node}")
            self._tasks.service(self._announcer(), f"registry announcer of {self.node}")
            self._tasks.service(self._puller(), f"registry puller of {self.node}")

    async def aclose(self) -> None:
        """Stop the background tasks and the subscriptions (idempotent)."""
        await self._tasks.aclose()
        unsubscribe, self._unsubscribe = self._unsubscribe, []
        for stop in unsubscribe:
            await stop()

    async def _gossip(self) -> None:
        while True:
            await asyncio.sleep(self.gossip_interval)
            try:
                await self.tick()
            except Exception:
                _log.exception("registry digest of %s failed", self.node)

    async def _announcer(self) -> None:
        while True:
            await self._announce.wait()
            await asyncio.sleep(self.announce_delay)  # a burst of changes: one announcement
            self._announce.clear()
            try:
                await self.flush()
            except Exception:
                _log.exception("registry announcement of %s failed", self.node)

    async def _puller(self) -> None:
        while True:
            await self._pull.wait()
            self._pull.clear()
            await self.sync()

    # -- this node's changes -----------------------------------------------------------------

    def changed(self, name: str) -> None:
        """``name`` changed on this node (`caxton.agents.AgentChanges` listener)."""
        self._dirty.add(name)
        self._announce.set()

    async def flush(self) -> None:
        """Announce the changes since the last flush, and this node's digest if a new node was
        heard (at once; the ticker does it by itself)."""
        if self._greet:
            self._greet = False
            await self.tick()
        names, self._dirty = self._dirty, set()
        upserts: list[wire.Entry] = []
        removes: list[str] = []
        for name in names:
            summary = self._local.summary(name)
            old = self._mine.get(name)
            if summary is None:
                if old is not None:
                    removes.append(name)
                    del self._mine[name]
                    self.hosts.unhost(name, self.node)
                continue
            entry = _entry(summary)
            if entry != old:
                upserts.append(entry)
                self._mine[name] = entry
                self.hosts.host(name, self.node, entry.deployed_at)
        if not upserts and not removes:
            return
        base = self._version
        self._version += 1
        if len(upserts) + len(removes) > ANNOUNCE_MAX:
            await self.tick()  # the peers pull the whole list
            return
        message = wire.Announcement(
            self.node, self.incarnation, base, self._version, upserts, removes
        )
        await self._bus.publish(wire.ANNOUNCEMENTS, wire.encode(message))
        self.sent += 1

    async def tick(self) -> None:
        """One gossip interval: publish this node's digest."""
        digest = wire.Digest(self.node, self.incarnation, self._version, len(self._mine))
        await self._bus.publish(wire.DIGESTS, wire.encode(digest))

    # -- the others' lists -------------------------------------------------------------------

    def _on_digest(self, subject: str, payload: bytes) -> None:
        try:
            digest = wire.decode_digest(payload)
        except msgspec.DecodeError as error:
            _log.warning("dropped a malformed registry digest (%d bytes): %s", len(payload), error)
            return
        if self._views.digest(digest):
            self._greet = True  # a node that joined or restarted: it learns of this one at once
            self._announce.set()

    def _on_announcement(self, subject: str, payload: bytes) -> None:
        try:
            note = wire.decode_announcement(payload)
        except msgspec.DecodeError as error:
            _log.warning(
                "dropped a malformed registry announcement (%d bytes): %s", len(payload), error
            )
            return
        if self._views.announcement(note):
            self.received += 1

    async def sync(self) -> None:
        """Pull the list of every node whose copy here is known to be old (now)."""
        stale = self._views.stale
        while stale:
            node = min(stale)
            stale.discard(node)
            self._pulling = True
            try:
                await self._pull_from(node)
            except (NoResponders, TimeoutError, msgspec.DecodeError, ValueError) as error:
                self.pull_failures += 1
                _log.info("registry: pulling the list of %s failed: %s", node, error or "timeout")
            finally:
                self._pulling = False

    async def _pull_from(self, node: str) -> None:
        after, entries = "", list[wire.Entry]()
        first: tuple[int, int] | None = None
        while True:
            request = wire.encode(wire.PageRequest(after, PAGE))
            reply = await self._bus.request(wire.pull_subject(node), request, PULL_TIMEOUT)
            page = wire.decode_page(reply)
            if page.node != node:
                raise ValueError(f"{node} answered as {page.node}")
            if first is None:
                first = (page.incarnation, page.version)
            elif first[0] != page.incarnation:
                raise ValueError(f"{node} restarted during the pull")
            entries += page.entries
            if not page.more or not page.entries:
                break
            after = page.entries[-1].name
        self.pulls += 1
        self._views.pulled(node, *first, entries)

    async def _serve(self, subject: str, payload: bytes) -> bytes:
        try:
            request = wire.decode_page_request(payload)
        except msgspec.DecodeError as error:
            _log.warning("dropped a malformed registry pull (%d bytes): %s", len(payload), error)
            return b""
        version, names = self._sorted
        if version != self._version or len(names) != len(self._mine):
            names = sorted(self._mine)
            self._sorted = (self._version, names)
        start = bisect.bisect_right(names, request.after)
        end = start + max(1, min(request.limit, PAGE_MAX))
        entries = [self._mine[name] for name in names[start:end] if name in self._mine]
        page = wire.Page(self.node, self.incarnation, self._version, entries, end < len(names))
        return wire.encode(page)

    # -- membership --------------------------------------------------------------------------

    def on_member(self, change: MemberChange) -> None:
        """Membership listener: a removed node's entries go; a restarted node is pulled."""
        member = change.member
        if member.name == self.node:
            return
        if change.current == "removed":
            self._views.removed(member.name, member.incarnation)
        elif change.current == "alive":
            self._views.alive(member.name, member.incarnation)
