"""The cluster, on NATS: the node's own nats-server, its name, the bus and membership.

Core package: it uses the config and the errors, never the API, the CLI, observability or the
server. Membership, the registry and cross-node messages come on top of `NatsServer`.
"""

from __future__ import annotations

from caxton.cluster.binary import find_binary
from caxton.cluster.bus import Bus, InMemoryBus, NatsBus
from caxton.cluster.identity import node_name
from caxton.cluster.membership import Member, MemberChange, Membership
from caxton.cluster.natsconf import NatsEndpoint, NatsSettings, render
from caxton.cluster.natsd import NatsServer, nats_endpoint

__all__ = [
    "Bus",
    "InMemoryBus",
    "Member",
    "MemberChange",
    "Membership",
    "NatsBus",
    "NatsEndpoint",
    "NatsServer",
    "NatsSettings",
    "find_binary",
    "nats_endpoint",
    "node_name",
    "render",
]
