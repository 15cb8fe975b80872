"""`Directory`: which node hosts an agent, the one question cross-node messaging asks.

The cluster's registry answers it (every node's view of every agent, from announcements and
digests); messaging across nodes depends only on this protocol, so it is tested with any
mapping that answers it.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Directory", "FixedDirectory"]


class Directory(Protocol):
    """Where agents live, as this node knows it now (loop thread; a dict lookup)."""

    def owner(self, agent: str) -> str | None:
        """The name of the node that hosts ``agent``; None if no node is known to host it."""
        ...


class FixedDirectory:
    """A `Directory` from a mapping (for tests and tools that know the placement)."""

    def __init__(self, owners: dict[str, str] | None = None) -> None:
        self.owners: dict[str, str] = dict(owners or {})

    def owner(self, agent: str) -> str | None:
        return self.owners.get(agent)
