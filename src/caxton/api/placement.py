"""The agents API in a cluster: where a deploy goes, and the listing of every node's agents.

Without a cluster these answer as a single node does: every agent is local, and its ``node``
is null.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from caxton.api.agent_forms import Upload
from caxton.api.keys import NODE
from caxton.api.remote import PREFIX, forward
from caxton.api.remote_wire import ApiCall
from caxton.errors import AgentNotFound, ClusterError, InvalidRequest
from caxton.wire.timestamps import rfc3339

if TYPE_CHECKING:
    from caxton.cluster.link import ClusterLink
    from caxton.node import Node

__all__ = ["deploy_target", "forward_deploy", "here", "list_agents_page"]

AUTO = "auto"


def here(node: Node) -> str | None:
    """This node's name in the cluster (None when the cluster is off)."""
    link = node.cluster
    return None if link is None else link.name


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(f"node: {message}", details={"field": "node"})


def deploy_target(node: Node, wanted: str | None) -> str | None:
    """The node a deploy goes to; None for this one (``wanted``: a name, "auto" or None)."""
    if wanted is None:
        return None
    link = node.cluster
    if link is None or link.registry is None:
        if wanted == AUTO:
            return None
        raise _invalid("the cluster is not enabled on this node: deploy without a node")
    if wanted == link.name:
        return None
    if wanted == AUTO:
        return _least_loaded(link)
    member = link.membership.get(wanted)
    if member is None:
        raise _invalid(f'no node called {wanted!r} in the cluster (a node name, or "auto")')
    if member.state not in ("alive", "suspect"):
        raise ClusterError(
            f"node {wanted!r} is {member.state}: deploy on a live node",
            details={"node": wanted, "node_state": member.state},
        )
    return wanted


def _least_loaded(link: ClusterLink) -> str | None:
    registry = link.registry
    assert registry is not None
    live = [m.name for m in link.membership.members() if m.state == "alive"]
    best = min(live or [link.name], key=lambda name: (registry.count(name), name))
    return None if best == link.name else best


async def forward_deploy(request: web.Request, target: str, up: Upload) -> web.Response:
    """Deploy ``up`` on node ``target`` (as a raw ``application/wasm`` upload)."""
    query = [("name", up.name or "")]
    if up.memory is not None:
        query.append(("memory", str(up.memory)))
    if up.fuel is not None:
        query.append(("fuel", str(up.fuel)))
    if up.grant_dir:
        query.append(("grant_dir", "true"))
    query += [("env", f"{key}={value}") for key, value in up.env.items()]
    call = ApiCall("POST", PREFIX, query, up.wasm, "application/wasm")
    return await forward(request, target, call)


def _remote_dict(link: ClusterLink, node: str, entry: Any) -> dict[str, Any]:
    member = link.membership.get(node)
    return {
        "name": entry.name,
        "node": node,
        "state": entry.state,
        "version": entry.version,
        "created_at": rfc3339(entry.deployed_at),
        "updated_at": rfc3339(entry.updated_at),
        "node_state": "unknown" if member is None else member.state,
    }


async def list_agents_page(
    request: web.Request, offset: int, limit: int, wanted: str | None
) -> tuple[list[dict[str, Any]], int]:
    """One page of the agents of every node (of node ``wanted`` only, if given), by name."""
    node = request.app[NODE]
    service = node.agents
    link = node.cluster
    name = here(node)
    if link is None or link.registry is None:
        if wanted is not None:
            raise _invalid("the cluster is not enabled on this node")
        infos, total = await service.list(offset=offset, limit=limit)
        return [info.as_dict() | {"node": None} for info in infos], total
    rows: list[tuple[str, str, Any]] = []
    if wanted is None or wanted == name:
        rows += [(agent, link.name, None) for agent in service.names()]
    rows += [(entry.name, host, entry) for host, entry in link.registry.remote(wanted)]
    rows.sort(key=lambda row: (row[0], row[1]))
    page: list[dict[str, Any]] = []
    for agent, host, entry in rows[offset : offset + limit]:
        if entry is not None:
            page.append(_remote_dict(link, host, entry))
            continue
        try:
            page.append((await service.get(agent)).as_dict() | {"node": name})
        except AgentNotFound:
            continue  # removed meanwhile
    return page, len(rows)
