"""Messaging: routing, conversations, delivery and dead letters.

`Messaging` is the facade (see `facade` for how the node composes it with the runtime);
`journal` makes agent-to-agent messages durable in batches; `routing` decides non-local
messages; `deadletters`, `replies` and `bus` hold the rest. The wire format (envelope
validation, stamping, the header) is `caxton.wire`, below both this package and the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from caxton._lazy import lazy_getattr

if TYPE_CHECKING:
    from caxton.messaging.bus import EventBus, Subscription
    from caxton.messaging.deadletters import REASONS, DeadLetter
    from caxton.messaging.facade import Accepted, Messaging
    from caxton.messaging.metrics import MessagingStatistics
    from caxton.messaging.options import MessagingOptions
    from caxton.messaging.replies import ReplyWaiter

# Submodules load on first use (the API imports this package before the node starts).
_LAZY = {
    "Accepted": "caxton.messaging.facade",
    "DeadLetter": "caxton.messaging.deadletters",
    "EventBus": "caxton.messaging.bus",
    "Messaging": "caxton.messaging.facade",
    "MessagingOptions": "caxton.messaging.options",
    "MessagingStatistics": "caxton.messaging.metrics",
    "REASONS": "caxton.messaging.deadletters",
    "ReplyWaiter": "caxton.messaging.replies",
    "Subscription": "caxton.messaging.bus",
}

__getattr__ = lazy_getattr(__name__, globals(), _LAZY)

__all__ = [
    "REASONS",
    "Accepted",
    "DeadLetter",
    "EventBus",
    "Messaging",
    "MessagingOptions",
    "MessagingStatistics",
    "ReplyWaiter",
    "Subscription",
]
