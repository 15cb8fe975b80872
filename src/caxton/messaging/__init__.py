"""Messaging: FIPA-ACL envelopes, routing, conversations, delivery and dead letters.

`Messaging` is the facade (see `facade` for how the node composes it with the runtime);
`codec` validates envelopes; `envelope` stamps agents' messages on the hot path; `journal`
makes agent-to-agent messages durable in batches; `router` decides non-local messages;
`deadletters`, `replies` and `bus` hold the rest.
"""

from caxton.messaging.bus import EventBus, Subscription
from caxton.messaging.codec import PERFORMATIVES, parse_message
from caxton.messaging.deadletters import REASONS, DeadLetter
from caxton.messaging.envelope import Incoming, Stamper, new_id
from caxton.messaging.facade import Accepted, Messaging
from caxton.messaging.metrics import MessagingStatistics
from caxton.messaging.options import MessagingOptions
from caxton.messaging.replies import ReplyWaiter

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
