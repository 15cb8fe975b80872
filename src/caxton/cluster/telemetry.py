"""What the cluster tells an operator of its members: events for the event stream, metrics.

`member_event` turns a `MemberChange` into the ``member`` event of ``GET /api/v1/events``
(docs/api.md); `samples` yields the cluster's metric records in the plain-tuple shape of
the observability layer's snapshot collector (docs/observability.md, "The cluster"), which
this module does not import.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from caxton.cluster.membership import STATES, MemberChange, Membership
from caxton.wire.timestamps import rfc3339

if TYPE_CHECKING:
    from caxton.cluster.natsd import NatsServer

__all__ = ["Sample", "member_event", "samples"]

#: (name, kind, labels, value, help): one metric record.
Sample = tuple[str, str, dict[str, str], int, str]


def member_event(change: MemberChange, now: float) -> dict[str, Any]:
    """The event stream's ``member`` event for `change` (`now`: wall time of the change)."""
    member = change.member
    return {
        "type": "member",
        "node": member.name,
        "state": change.current,
        "previous": change.previous,
        "api_address": member.api,
        "cluster_address": member.cluster,
        "incarnation": member.incarnation,
        "time": rfc3339(now),
    }


def samples(membership: Membership | None, server: NatsServer | None) -> Iterator[Sample]:
    """The cluster's metric records (zeros before membership has started); the nats-server
    restarts only when the node runs its own child."""
    members = [] if membership is None else membership.members()
    for state in STATES:
        count = sum(1 for member in members if member.state == state)
        yield (
            "cluster_members",
            "gauge",
            {"state": state},
            count,
            "Members of the cluster (this node included) by state, as this node sees them.",
        )
    sent, received, stalls = (
        (0, 0, 0)
        if membership is None
        else (membership.sent, membership.received, membership.stalls)
    )
    yield ("cluster_heartbeats_sent", "counter", {}, sent, "Heartbeats this node published.")
    yield (
        "cluster_heartbeats_received",
        "counter",
        {},
        received,
        "Heartbeats heard from the other members.",
    )
    yield (
        "cluster_event_loop_stalls",
        "counter",
        {},
        stalls,
        "Membership ticks more than one probe_interval late (the event loop was stalled);"
        " peers are not checked at such a tick.",
    )
    if server is not None:
        yield (
            "cluster_nats_server_restarts",
            "counter",
            {},
            server.restarts,
            "Times this node's nats-server child died on its own and was started again.",
        )
