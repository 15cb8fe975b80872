"""What the registry sends on the bus (msgpack via msgspec), and its subjects.

* `ANNOUNCEMENTS`: an `Announcement` of a node's changed entries, from version ``base`` to
  ``version`` of that node's list (a peer that holds ``base`` applies it, any other pulls).
* `DIGESTS`: every ``gossip_interval`` each node's `Digest` (node, incarnation, version,
  count): a peer whose copy is older pulls.
* `pull_subject(node)`: request/reply; a `PageRequest` (entries after a name, at most
  ``limit``) is answered by a `Page` of that node's entries in name order.

Entries are arrays on the wire (``array_like``): 10,000 of them are about 500 KB.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "ANNOUNCEMENTS",
    "DIGESTS",
    "Announcement",
    "Digest",
    "Entry",
    "Page",
    "PageRequest",
    "pull_subject",
]

ANNOUNCEMENTS = "caxton.registry.announce"
DIGESTS = "caxton.registry.digest"


def pull_subject(node: str) -> str:
    """Where ``node`` answers pulls of its list."""
    return f"caxton.node.{node}.registry"


class Entry(msgspec.Struct, array_like=True, frozen=True):
    """One agent as its node lists it."""

    name: str
    state: str
    version: int
    deployed_at: float  # unix seconds of the first deploy (the conflict rule reads it)
    updated_at: float


class Announcement(msgspec.Struct, frozen=True):
    node: str
    incarnation: int
    base: int
    version: int
    upserts: list[Entry]
    removes: list[str]


class Digest(msgspec.Struct, frozen=True):
    node: str
    incarnation: int
    version: int
    count: int


class PageRequest(msgspec.Struct, frozen=True):
    after: str
    limit: int


class Page(msgspec.Struct, frozen=True):
    node: str
    incarnation: int
    version: int
    entries: list[Entry]
    more: bool


encode = msgspec.msgpack.encode
decode_announcement = msgspec.msgpack.Decoder(Announcement).decode
decode_digest = msgspec.msgpack.Decoder(Digest).decode
decode_page_request = msgspec.msgpack.Decoder(PageRequest).decode
decode_page = msgspec.msgpack.Decoder(Page).decode
