"""`Views`: this node's copies of the other nodes' agent lists, and which are out of date.

Each copy is a node's entries at one (incarnation, version) of its list. An announcement is
applied when the copy is at its base version; a digest, an announcement or a pull that shows a
newer list marks the copy *stale* (the registry pulls it); a pull replaces the copy unless
announcements brought it further meanwhile. A removed node's incarnation stays removed: its
copy goes and its lists of that run are ignored from then on. Every entry added or dropped is
told to `Hosts` (owners and conflicts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from caxton.cluster import registry_wire as wire
from caxton.cluster.hosts import Hosts

__all__ = ["Views"]


@dataclass(slots=True)
class _View:
    incarnation: int
    version: int
    entries: dict[str, wire.Entry] = field(default_factory=dict)


class Views:
    """The other nodes' lists as ``node`` holds them; ``wake`` is called when one is stale."""

    def __init__(self, node: str, hosts: Hosts, wake: Callable[[], None]) -> None:
        self.node = node
        self._hosts = hosts
        self._wake = wake
        self._views: dict[str, _View] = {}
        self._removed: dict[str, int] = {}  # node -> newest incarnation removed
        #: Nodes whose list is to be pulled.
        self.stale: set[str] = set()

    def known(self, node: str, incarnation: int) -> bool:
        """Whether a list of ``node`` at ``incarnation`` is one to hold (not this node's, not a
        removed run)."""
        return node != self.node and incarnation > self._removed.get(node, -1)

    def remote(self, node: str | None = None) -> Iterator[tuple[str, wire.Entry]]:
        for name, view in self._views.items():
            if node is None or node == name:
                for entry in view.entries.values():
                    yield name, entry

    def count(self, node: str) -> int:
        view = self._views.get(node)
        return 0 if view is None else len(view.entries)

    def nodes(self) -> set[str]:
        return set(self._views)

    def sizes(self) -> dict[str, int]:
        return {node: len(view.entries) for node, view in self._views.items()}

    def mark_stale(self, node: str) -> None:
        self.stale.add(node)
        self._wake()

    def digest(self, digest: wire.Digest) -> bool:
        """Take a digest in; True if it is of a node (or a run of it) not heard before."""
        if not self.known(digest.node, digest.incarnation):
            return False
        view = self._views.get(digest.node)
        if view is None or (digest.incarnation, digest.version) > (view.incarnation, view.version):
            self.mark_stale(digest.node)
        return view is None or digest.incarnation > view.incarnation

    def announcement(self, note: wire.Announcement) -> bool:
        """Apply an announcement, or mark its node stale; whether it was one to hold."""
        if not self.known(note.node, note.incarnation):
            return False
        view = self._views.get(note.node)
        if view is None or view.incarnation != note.incarnation or view.version != note.base:
            if view is None or (note.incarnation, note.version) > (view.incarnation, view.version):
                self.mark_stale(note.node)
            return True
        for name in note.removes:
            if view.entries.pop(name, None) is not None:
                self._hosts.unhost(name, note.node)
        for entry in note.upserts:
            view.entries[entry.name] = entry
            self._hosts.host(entry.name, note.node, entry.deployed_at)
        view.version = note.version
        return True

    def pulled(self, node: str, incarnation: int, version: int, entries: list[wire.Entry]) -> None:
        """A whole list pulled from ``node``: it replaces the copy unless that is newer."""
        if not self.known(node, incarnation):
            return
        view = self._views.get(node)
        if view is not None and (view.incarnation, view.version) >= (incarnation, version):
            return  # announcements brought it this far meanwhile
        self._replace(node, _View(incarnation, version, {e.name: e for e in entries}))

    def removed(self, node: str, incarnation: int) -> None:
        """``node`` was removed from membership at ``incarnation``: its copy goes."""
        self._removed[node] = max(self._removed.get(node, -1), incarnation)
        view = self._views.get(node)
        if view is not None and view.incarnation <= incarnation:
            self._replace(node, None)
        self.stale.discard(node)

    def alive(self, node: str, incarnation: int) -> None:
        """Membership sees ``node`` alive at ``incarnation``: pull it if that is a new run."""
        view = self._views.get(node)
        if self.known(node, incarnation) and (view is None or incarnation > view.incarnation):
            self.mark_stale(node)

    def _replace(self, node: str, view: _View | None) -> None:
        old = self._views.pop(node, None)
        new = {} if view is None else view.entries
        if old is not None:
            for name in old.entries:
                if name not in new:
                    self._hosts.unhost(name, node)
        for entry in new.values():
            self._hosts.host(entry.name, node, entry.deployed_at)
        if view is not None:
            self._views[node] = view
