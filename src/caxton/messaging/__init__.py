"""Messaging: FIPA-ACL envelopes, routing, conversations, delivery and dead letters.

`Messaging` is the facade (see `facade` for how the node composes it with the runtime);
`codec` validates envelopes; `envelope` stamps agents' messages on the hot path; `journal`
makes agent-to-agent messages durable in batches; `router` decides non-local messages;
`deadletters`, `replies` and `bus` hold the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from caxton._lazy import lazy_getattr

if TYPE_CHECKING:
    from caxton.messaging.bus import EventBus, Subscription
    from caxton.messaging.codec import PERFORMATIVES, parse_message
    from caxton.messaging.deadletters import REASONS, DeadLetter
    from caxton.messaging.envelope import Incoming, Stamper, new_id
    from caxton.messaging.facade import Accepted, Messaging
    from caxton.messaging.metrics import MessagingStatistics
    from caxton.messaging.options import MessagingOptions
    from caxton.messaging.replies import ReplyWaiter

# Submodules load on first use (the API imports this package before the node starts).
_LAZY = {
    "Accepted": "caxton.messaging.facade",
    "DeadLetter": "caxton.messaging.deadletters",
    "EventBus": "caxton.messaging.bus",
    "Incoming": "caxton.messaging.envelope",
    "Messaging": "caxton.messaging.facade",
    "MessagingOptions": "caxton.messaging.options",
    "MessagingStatistics": "caxton.messaging.metrics",
    "PERFORMATIVES": "caxton.messaging.codec",
    "REASONS": "caxton.messaging.deadletters",
    "ReplyWaiter": "caxton.messaging.replies",
    "Stamper": "caxton.messaging.envelope",
    "Subscription": "caxton.messaging.bus",
    "new_id": "caxton.messaging.envelope",
    "parse_message": "caxton.messaging.codec",
}

__getattr__ = lazy_getattr(__name__, globals(), _LAZY)

__all__ = [
    "PERFORMATIVES",
    "REASONS",
    "Accepted",
    "DeadLetter",
    "EventBus",
    "Incoming",
    "Messaging",
    "MessagingOptions",
    "MessagingStatistics",
    "ReplyWaiter",
    "Stamper",
    "Subscription",
    "new_id",
    "parse_message",
]
