"""The agents API: deploy, list, show, upgrade, roll back, stop, start, remove, logs.

Handlers are thin: `agent_forms` parses the request, one `AgentService` method does the work,
the agent's ``as_dict()`` is the answer. Errors are `caxton.errors` classes and become the
envelope in the error middleware.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from caxton.agents._model import NAME_PATTERN, AgentInfo, DeployRequest
from caxton.api.agent_forms import DEPLOY, UPGRADE, query_int, read_upload
from caxton.api.agent_schemas import (
    AGENT_SCHEMA,
    BAD_MODULE,
    DEPLOY_BODY,
    LIST_SCHEMA,
    LOGS_SCHEMA,
    MAX_LOG_LINES,
    MAX_PAGE,
    NOT_FOUND,
    UPGRADE_BODY,
)
from caxton.api.keys import NODE
from caxton.api.placement import deploy_target, forward_deploy, here, list_agents_page
from caxton.api.routes import Route, integer
from caxton.errors import InvalidRequest
from caxton.wire.timestamps import rfc3339

if TYPE_CHECKING:
    from caxton.agents.service import AgentService

__all__ = ["agent_routes"]

PREFIX = "/api/v1/agents"
#: The ``{name}`` of the agent routes (anything else is simply not found).
_NAME = {"name": {"type": "string", "pattern": NAME_PATTERN.pattern}}
#: In a cluster, any agent route may name the node whose copy it means (docs/cluster.md).
_ON_NODE = {"node": "cluster: the copy on this node, whichever node hosts the agent"}


def _service(request: web.Request) -> AgentService:
    service: AgentService = request.app[NODE].agents
    return service


def _agent(request: web.Request, info: AgentInfo, status: int = 200) -> web.Response:
    return web.json_response(info.as_dict() | {"node": here(request.app[NODE])}, status=status)


async def deploy(request: web.Request) -> web.Response:
    """``POST /api/v1/agents``: deploy a new agent (201 with the agent and its Location), here
    or on the node the upload names."""
    up = await read_upload(request, DEPLOY)
    if not up.name:
        raise InvalidRequest("name: required (the agent's name)", details={"field": "name"})
    target = deploy_target(request.app[NODE], up.node)
    if target is not None:
        return await forward_deploy(request, target, up)
    info = await _service(request).deploy(
        DeployRequest(
            name=up.name,
            wasm=up.wasm,
            env=up.env,
            memory_limit=up.memory,
            fuel=up.fuel,
            grant_dir=up.grant_dir,
        )
    )
    response = _agent(request, info, 201)
    response.headers["Location"] = f"{PREFIX}/{info.name}"
    return response


async def list_agents(request: web.Request) -> web.Response:
    """``GET /api/v1/agents?offset=&limit=&node=``: one page of agents (of every node in a
    cluster, of one node with ``node``), by name."""
    offset = query_int(request, "offset", 0, 0, 2**31)
    limit = query_int(request, "limit", 100, 1, MAX_PAGE)
    agents, total = await list_agents_page(request, offset, limit, request.query.get("node"))
    return web.json_response(
        {
            "agents": agents,
            "total": total,
            "offset": offset,
            "limit": limit,
        }
    )


async def show(request: web.Request) -> web.Response:
    """``GET /api/v1/agents/{name}``."""
    return _agent(request, await _service(request).get(request.match_info["name"]))


async def upgrade(request: web.Request) -> web.Response:
    """``PUT /api/v1/agents/{name}``: a new module, or ``?version=N`` to roll back to one."""
    name = request.match_info["name"]
    if "version" in request.query:
        version = query_int(request, "version", 0, 1, 2**31)
        if request.can_read_body and await request.read():
            raise InvalidRequest(
                "a rollback (?version=N) takes no body; send the module without ?version "
                "to upgrade",
                details={"field": "version"},
            )
        return _agent(request, await _service(request).rollback(name, version))
    up = await read_upload(request, UPGRADE)
    return _agent(request, await _service(request).upgrade(name, up.wasm))


async def stop(request: web.Request) -> web.Response:
    """``POST /api/v1/agents/{name}/stop``: the message being handled finishes first."""
    return _agent(request, await _service(request).stop(request.match_info["name"]))


async def start(request: web.Request) -> web.Response:
    """``POST /api/v1/agents/{name}/start``: run a stopped or failed agent again."""
    return _agent(request, await _service(request).start(request.match_info["name"]))


async def remove(request: web.Request) -> web.Response:
    """``DELETE /api/v1/agents/{name}``: stop it and forget it (module, versions, kv)."""
    await _service(request).remove(request.match_info["name"])
    return web.Response(status=204)


async def logs(request: web.Request) -> web.Response:
    """``GET /api/v1/agents/{name}/logs?n=100``: the agent's recent log lines, oldest first."""
    name = request.match_info["name"]
    n = query_int(request, "n", 100, 0, MAX_LOG_LINES)
    lines = _service(request).logs(name, n)
    return web.json_response(
        {
            "name": name,
            "lines": [
                {"time": rfc3339(line.time), "level": line.level, "text": line.text}
                for line in lines
            ],
        }
    )


def agent_routes() -> list[Route]:
    """The `/api/v1/agents` routes."""
    item = f"{PREFIX}/{{name}}"
    return [
        Route(
            method="POST",
            path=PREFIX,
            handler=deploy,
            summary="Deploy an agent (JSON with base64 wasm, multipart, or application/wasm)",
            tag="agents",
            request_body=DEPLOY_BODY,
            responses={
                201: "Deployed; Location names the agent",
                503: "UNAVAILABLE: the target node does not answer (details.node)",
                **BAD_MODULE,
                409: "AGENT_ALREADY_EXISTS",
                429: "RESOURCE_LIMIT_EXCEEDED: runtime.max_agents agents are deployed",
            },
            query={
                "name": "application/wasm form: the agent's name",
                "memory": 'application/wasm form: memory limit ("64MB" or bytes)',
                "fuel": integer("application/wasm form: fuel per message", 1, 2**63 - 1),
                "grant_dir": "application/wasm form: grant a per-agent data directory",
                "env": "application/wasm form: K=V, repeatable",
                "node": 'application/wasm form: the node to deploy on, or "auto" (cluster)',
            },
            response_schema=AGENT_SCHEMA,
        ),
        Route(
            method="GET",
            path=PREFIX,
            handler=list_agents,
            summary="List agents, by name, one page at a time",
            tag="agents",
            responses={200: "One page of agents", 400: "INVALID_REQUEST: bad offset or limit"},
            query={
                "offset": integer("agents to skip (default 0)", 0, 2**31),
                "limit": integer(f"page size (default 100, at most {MAX_PAGE})", 1, MAX_PAGE),
                "node": "cluster: only the agents of this node",
            },
            response_schema=LIST_SCHEMA,
        ),
        Route(
            method="GET",
            path=item,
            path_schemas=_NAME,
            handler=show,
            summary="Show one agent: state, version, limits, counters",
            tag="agents",
            responses={200: "The agent", **NOT_FOUND},
            query=_ON_NODE,
            response_schema=AGENT_SCHEMA,
        ),
        Route(
            method="PUT",
            path=item,
            path_schemas=_NAME,
            handler=upgrade,
            summary="Upgrade to a new module, or roll back with ?version=N (no body)",
            tag="agents",
            request_body=UPGRADE_BODY,
            responses={200: "The agent at its new version", **BAD_MODULE, **NOT_FOUND},
            query={
                "version": integer("roll back to this stored version (send no body)", 1, 2**31),
                **_ON_NODE,
            },
            response_schema=AGENT_SCHEMA,
        ),
        Route(
            method="DELETE",
            path=item,
            path_schemas=_NAME,
            handler=remove,
            summary="Stop and remove an agent",
            tag="agents",
            responses={204: "Removed", **NOT_FOUND},
            query=_ON_NODE,
        ),
        Route(
            method="POST",
            path=f"{item}/stop",
            path_schemas=_NAME,
            handler=stop,
            summary="Stop an agent (the message being handled finishes first)",
            tag="agents",
            responses={200: "The agent, stopped", **NOT_FOUND},
            query=_ON_NODE,
            response_schema=AGENT_SCHEMA,
        ),
        Route(
            method="POST",
            path=f"{item}/start",
            path_schemas=_NAME,
            handler=start,
            summary="Start a stopped or failed agent",
            tag="agents",
            responses={200: "The agent, running", 400: "INVALID_WASM: it failed to start"}
            | NOT_FOUND,
            query=_ON_NODE,
            response_schema=AGENT_SCHEMA,
        ),
        Route(
            method="GET",
            path=f"{item}/logs",
            path_schemas=_NAME,
            handler=logs,
            summary="The agent's recent log lines (caxton.log and WASI stdout/stderr)",
            tag="agents",
            responses={200: "Oldest first", 400: "INVALID_REQUEST: bad n", **NOT_FOUND},
            query={
                "n": integer(
                    f"how many recent lines (default 100, at most {MAX_LOG_LINES})",
                    0,
                    MAX_LOG_LINES,
                ),
                **_ON_NODE,
            },
            response_schema=LOGS_SCHEMA,
        ),
    ]
