"""Messaging: routing, conversations, delivery and dead letters.

`Messaging` is the facade (see `facade` for how the node composes it with the runtime and
how it wires its parts): `routing` is the routing rule, `port` what the runtime is handed,
`intake` and `bulk` take messages from API clients, `history` (with its `journal`) keeps the
conversations, `deadletters` the dead letters, `replies` the waiting clients, `bus` the live
events, `metrics` the counters. The wire format (envelope
validation, stamping, the header) is `caxton.wire`, below both this package and the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from caxton._lazy import lazy_getattr

if TYPE_CHECKING:
    from caxton.messaging.bus import EventBus, Subscription
    from caxton.messaging.deadletters import REASONS, DeadLetter
    from caxton.messaging.facade import Messaging
    from caxton.messaging.intake import Accepted
    from caxton.messaging.metrics import MessagingStatistics
    from caxton.messaging.options import MessagingOptions
    from caxton.messaging.port import DeliveryPort
    from caxton.messaging.replies import ReplyWaiter

# Submodules load on first use (the API imports this package before the node starts).
_LAZY = {
    "Accepted": "caxton.messaging.intake",
    "DeadLetter": "caxton.messaging.deadletters",
    "DeliveryPort": "caxton.messaging.port",
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
    "DeliveryPort",
    "EventBus",
    "Messaging",
    "MessagingOptions",
    "MessagingStatistics",
    "ReplyWaiter",
    "Subscription",
]
