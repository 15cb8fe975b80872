"""The cluster, on NATS: for now the node's own nats-server and its name.

Core package: it uses the config and the errors, never the API, the CLI, observability or the
server. Membership, the registry and cross-node messages come on top of `NatsServer`.
"""

from __future__ import annotations

from caxton.cluster.binary import find_binary
from caxton.cluster.identity import node_name
from caxton.cluster.natsconf import NatsEndpoint, NatsSettings, render
from caxton.cluster.natsd import NatsServer, nats_endpoint

__all__ = [
    "NatsEndpoint",
    "NatsServer",
    "NatsSettings",
    "find_binary",
    "nats_endpoint",
    "node_name",
    "render",
]
