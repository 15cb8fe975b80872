"""`MessagingOptions`: the messaging layer's knobs, with documented defaults.

These are Caxton additions that the seed's ``production.toml`` does not have; until the config
schema grows a ``[messaging]`` section the node passes the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MessagingOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MessagingOptions:
    """How long to wait for full mailboxes, how much history to keep, how often to flush."""

    #: `Messaging.submit` waits this long for room in a full mailbox, then dead-letters the
    #: message (reason ``mailbox_full``) and raises `WouldBlock` (the API answers 429).
    submit_wait: float = 1.0
    #: `Messaging.recover` waits this long per message for room in a full mailbox.
    recover_wait: float = 30.0
    #: The event loop flushes the journal at least this often (seconds), or leaves it to the
    #: commit in flight, which flushes what waits; workers flush too (when they go idle or
    #: post events, and every `journal.FLUSH_AT` entries), so this timer only matters under
    #: sustained load. 20 ms rather than 5 ms: each flush is one SQLite
    #: commit on the writer thread, and four times fewer commits cut ~25% of the CPU per
    #: agent-to-agent message (interleaved bench runs). Durability is unchanged in kind (agent
    #: messages commit asynchronously; a lost flush is re-sent by its handler, see `journal`),
    #: and memory stays bounded by `journal.FLUSH_AT`.
    flush_interval: float = 0.02
    #: Conversation history kept, in messages; the oldest are deleted beyond it (pending
    #: deliveries and dead letters are kept regardless).
    max_history: int = 1_000_000
    #: Conversation history kept, in bytes of message JSON: the oldest are deleted beyond it
    #: too (an agent that sends large messages would otherwise grow the file by tens of
    #: megabytes a second until `max_history` messages: hundreds of gigabytes).
    max_history_bytes: int = 1 << 30
    #: Dead letters kept; the oldest are deleted beyond it.
    max_dead_letters: int = 100_000
    #: How often the limits above are enforced (seconds); also as soon as a quarter of a
    #: limit's worth came in since the last time (checked every second).
    prune_interval: float = 60.0
    #: API client names remembered as reply addresses (least recently used are forgotten;
    #: a client waiting for a reply is always known).
    max_clients: int = 65_536
