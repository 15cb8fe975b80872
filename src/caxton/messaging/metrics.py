"""Counters of the messaging layer: `statistics()` and Prometheus-ready samples.

`metric_samples` yields plain tuples in the shape `caxton.observability.snapshot` collects
(``(name, kind, labels, value)``), so the core never imports the observability package.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from caxton.messaging.bus import EventBus
from caxton.messaging.deadletters import DeadLetters
from caxton.messaging.history import History
from caxton.messaging.replies import Replies
from caxton.messaging.routing import Router

if TYPE_CHECKING:
    from caxton.runtime.runtime import Runtime

__all__ = ["MessagingMetrics", "MessagingStatistics"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MessagingStatistics:
    """A snapshot of the messaging layer (counters since start)."""

    submitted: int  # accepted from API clients
    agent_sent: int  # sent by agents (written by the journal)
    handled: int  # handled successfully (journal marks)
    dead_letters: dict[str, int]  # by reason
    replies_to_clients: int
    journal_depth: int  # entries not yet flushed
    journal_flushes: int
    journal_failed_flushes: int
    subscribers: int
    subscribers_dropped: int
    reply_waiters: int
    known_clients: int


class MessagingMetrics:
    """`statistics` and `metric_samples` of the messaging layer and the runtime it delivers to."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        history: History,
        letters: DeadLetters,
        router: Router,
        replies: Replies,
        bus: EventBus,
    ) -> None:
        self.runtime = runtime
        self.history = history
        self.letters = letters
        self.router = router
        self.replies = replies
        self.bus = bus

    def statistics(self) -> MessagingStatistics:
        """A frozen snapshot of the counters."""
        journal = self.history.journal
        return MessagingStatistics(
            submitted=self.history.submitted,
            agent_sent=journal.sent_total,
            handled=journal.handled_total,
            dead_letters=dict(self.letters.counts),
            replies_to_clients=self.replies.delivered,
            journal_depth=len(journal),
            journal_flushes=journal.flushes,
            journal_failed_flushes=journal.failed_flushes,
            subscribers=len(self.bus),
            subscribers_dropped=self.bus.dropped,
            reply_waiters=self.replies.waiting(),
            known_clients=self.replies.known_clients(),
        )

    def metric_samples(self) -> Iterator[tuple[str, str, dict[str, str], Any, str]]:
        """Samples for a snapshot collector (see the module docstring)."""
        s = self.statistics()
        yield (
            "messages_sent",
            "counter",
            {},
            s.submitted + s.agent_sent,
            "Messages accepted from API clients or sent by agents.",
        )
        r = self.runtime.statistics()
        received = sum(r.executions.values())
        yield ("messages_received", "counter", {}, received, "Messages agents handled.")
        counts = r.duration_buckets
        yield (
            "message_processing_duration_seconds",
            "histogram",
            {},
            (r.duration_bounds, counts[:-1], r.duration_sum, sum(counts)),
            "Time agents spent handling one message.",
        )
        yield ("message_queue_size", "gauge", {}, r.mailbox_depth, "Messages in mailboxes.")
        for status, n in r.executions.items():
            if status != "ok":
                yield (
                    "message_errors",
                    "counter",
                    {"reason": status},
                    n,
                    "Messages that failed, by reason.",
                )
        for reason, n in s.dead_letters.items():
            yield ("dead_letters", "counter", {"reason": reason}, n, "Dead letters, by reason.")
            if reason != "handler_failed":  # counted above by cause
                yield ("message_errors", "counter", {"reason": reason}, n, "")
        yield (
            "dead_letters_expired",
            "counter",
            {},
            self.letters.expired,
            "The oldest dead letters deleted beyond the 100,000 kept.",
        )
        for reason, n in sorted(self.router.dropped.items()):
            yield (
                "dead_letters_dropped",
                "counter",
                {"reason": reason},
                n,
                "Dead letters of agents' sends not stored: over max_dead_letters_per_second.",
            )
        yield (
            "agent_sends_over_budget",
            "counter",
            {},
            self.runtime.sends_over_budget(),
            "Agent sends refused with -7: over max_sends_per_message or the per-second budget.",
        )
        yield ("message_journal_depth", "gauge", {}, s.journal_depth, "Journal entries unwritten.")
        # Every subscriber of the event bus is a GET /api/v1/events WebSocket stream.
        yield (
            "websocket_connections",
            "gauge",
            {},
            s.subscribers,
            "Open /api/v1/events WebSocket streams.",
        )
        yield (
            "websocket_connections_dropped",
            "counter",
            {},
            s.subscribers_dropped,
            "WebSocket streams closed for being too slow (close code 4008).",
        )
