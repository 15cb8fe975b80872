"""The cluster API: ``GET /api/v1/cluster/members`` and ``DELETE /api/v1/cluster/members/{name}``.

The members are what this node's membership sees (docs/cluster.md, "Members"): each node's
name, addresses, state, agents hosted, incarnation and last change, and which one is this node.
Without ``cluster_enabled`` the answer is 200 with ``"cluster_enabled": false`` and this node
alone (``alive``). Removing forgets a ``dead`` or ``left`` member for good: 404 ``NOT_FOUND``
for a name no member has, 409 ``MEMBER_NOT_DOWN`` (``details.state``) for one that is
``alive`` or ``suspect``, or this node itself.

Nothing of ``caxton.cluster`` is imported here at run time (a single node loads none of it):
the link comes from ``node.cluster``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from caxton.api.errors import ApiError
from caxton.api.keys import NODE
from caxton.api.routes import Route
from caxton.config.schema import NODE_NAME
from caxton.node import Node
from caxton.wire.timestamps import rfc3339

if TYPE_CHECKING:
    from caxton.cluster.membership import Member

__all__ = ["MEMBER_NOT_DOWN", "cluster_routes"]

PREFIX = "/api/v1/cluster/members"
#: The error code of a remove refused because the member is not dead or left.
MEMBER_NOT_DOWN = "MEMBER_NOT_DOWN"
_STATES = ["alive", "suspect", "dead", "left"]
_NAME = {"name": {"type": "string", "pattern": f"^{NODE_NAME.pattern}$"}}

MEMBER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "name",
        "api_address",
        "cluster_address",
        "state",
        "agents",
        "incarnation",
        "last_change",
        "self",
    ],
    "properties": {
        "name": {"type": "string"},
        "api_address": {"type": "string"},
        "cluster_address": {"type": ["string", "null"]},
        "state": {"enum": _STATES},
        "agents": {"type": "integer", "minimum": 0},
        "incarnation": {"type": ["integer", "null"]},
        "last_change": {"type": ["string", "null"], "format": "date-time"},
        "self": {"type": "boolean"},
    },
}
MEMBERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["cluster_enabled", "node", "members", "total"],
    "properties": {
        "cluster_enabled": {"type": "boolean"},
        "node": {"type": "string"},
        "members": {"type": "array", "items": MEMBER_SCHEMA},
        "total": {"type": "integer", "minimum": 1},
    },
}
REMOVED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [*MEMBER_SCHEMA["required"], "removed"],
    "properties": {**MEMBER_SCHEMA["properties"], "removed": {"const": True}},
}


def _member(member: Member, this: str) -> dict[str, Any]:
    return {
        "name": member.name,
        "api_address": member.api,
        "cluster_address": member.cluster,
        "state": member.state,
        "agents": member.agents,
        "incarnation": member.incarnation,
        "last_change": rfc3339(member.since),
        "self": member.name == this,
    }


def _alone(node: Node) -> dict[str, Any]:
    """This node as the only member of a cluster that is not enabled."""
    name = node.config.coordination.node_name or node.storage.node_id
    started = node.started_at
    return {
        "name": name,
        "api_address": str(node.config.networking.bind_address),
        "cluster_address": None,
        "state": "alive",
        "agents": len(node.agents.names()),
        "incarnation": None,
        "last_change": None if started is None else rfc3339(started),
        "self": True,
    }


async def list_members(request: web.Request) -> web.Response:
    """``GET /api/v1/cluster/members``: every member this node knows, by name."""
    node: Node = request.app[NODE]
    link = node.cluster
    if link is None:
        alone = _alone(node)
        members, name, enabled = [alone], alone["name"], False
    else:
        name, enabled = link.name, True
        members = [_member(member, name) for member in link.membership.members()]
    body = {"cluster_enabled": enabled, "node": name, "members": members, "total": len(members)}
    return web.json_response(body)


async def remove_member(request: web.Request) -> web.Response:
    """``DELETE /api/v1/cluster/members/{name}``: forget a dead or left member for good."""
    node: Node = request.app[NODE]
    name = request.match_info["name"]
    link = node.cluster
    if link is None:
        raise ApiError(
            404,
            "NOT_FOUND",
            f"no member called {name!r}: this node is not in a cluster "
            "([coordination] cluster_enabled is false)",
            details={"name": name},
        )
    membership = link.membership
    if name == link.name:
        raise ApiError(
            409,
            MEMBER_NOT_DOWN,
            f"{name} is this node (alive): stop it, then remove it from another member",
            details={"name": name, "state": "alive"},
        )
    member = membership.get(name)
    if member is None:
        raise ApiError(404, "NOT_FOUND", f"no member called {name!r}", details={"name": name})
    if member.state not in ("dead", "left"):
        raise ApiError(
            409,
            MEMBER_NOT_DOWN,
            f"member {name} is {member.state}: only a dead or left member can be removed "
            "(stop that node first, or wait until this node sees it dead)",
            details={"name": name, "state": member.state},
        )
    removed = await membership.remove(name)
    return web.json_response(_member(removed, link.name) | {"removed": True})


def cluster_routes() -> list[Route]:
    """The cluster routes."""
    return [
        Route(
            method="GET",
            path=PREFIX,
            handler=list_members,
            summary="The members of the cluster as this node sees them (this node alone "
            "without cluster_enabled)",
            tag="cluster",
            response_schema=MEMBERS_SCHEMA,
        ),
        Route(
            method="DELETE",
            path=PREFIX + "/{name}",
            handler=remove_member,
            summary="Forget a dead or left member for good",
            tag="cluster",
            responses={
                200: "Removed; the member as it was",
                404: "NOT_FOUND: no member has that name",
                409: "MEMBER_NOT_DOWN: the member is alive or suspect, or is this node "
                "(details.state)",
            },
            response_schema=REMOVED_SCHEMA,
            path_schemas=_NAME,
        ),
    ]
