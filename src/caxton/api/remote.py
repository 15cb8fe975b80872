"""Agent operations from any node: the agent API on a node that does not host the agent.

**Entry side** (`remote_middleware`, only with ``cluster_enabled``): a request for
``/api/v1/agents/{name}...`` whose agent this node does not host, and that the registry places
on another node, is sent to that node as an `ApiCall` over NATS, and the owner's answer is the
answer. ``?node=NAME`` sends it to NAME whatever the registry says (the losing copy of a
conflict is reached that way) and is removed before the request is handled. A deploy with a
target node is sent by the deploy handler (`forward`), and so is a dead letter's redrive with
``?node=`` (its id is that node's).

**Owner side** (`AgentApiResponder`): answers ``caxton.node.<self>.api`` by making the same
HTTP request to an internal copy of the agents API (agents and debug routes, the error
envelope, no authentication: the cluster is trusted through its route secret or TLS), which
listens on a Unix socket in a private directory (mode 0700) only this process knows. Each call
runs in its own task, so a slow deploy does not hold up the others.

An owner that does not answer (dead, partitioned, not started) is a 503 ``UNAVAILABLE`` that
names the node and the state membership gives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import msgspec
from aiohttp import web
from yarl import URL

from caxton.api.debug import debug_routes
from caxton.api.errors import error_middleware
from caxton.api.keys import MAX_REQUEST_SIZE, NODE, REQUEST_TIMEOUT
from caxton.api.remote_wire import (
    PART,
    ApiCall,
    ApiReply,
    api_subject,
    decode_call,
    decode_reply,
    encode,
    error_reply,
)
from caxton.api.routes import add_routes
from caxton.errors import ClusterError, InvalidRequest
from caxton.tasks import TaskSet

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from caxton.cluster.link import ClusterLink
    from caxton.node import Node

__all__ = ["AgentApiResponder", "forward", "remote_middleware"]

log = logging.getLogger("caxton.api.remote")

PREFIX = "/api/v1/agents"
#: Large calls whose parts are coming, at most, and how long a part waits for the next.
MAX_UPLOADS = 16
PARTS_TTL = 60.0
#: How long a call waits for a live node that does not answer its API subject yet, and how
#: often it asks again meanwhile (seconds).
STARTING_WAIT = 3.0
STARTING_RETRY = 0.05
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE"})
#: The one route besides the agents API that other nodes call (``?node=`` on a redrive).
_REDRIVE = re.compile(r"/api/v1/dead-letters/[0-9]{1,19}/redrive")


def _link(node: Node) -> ClusterLink:
    link = node.cluster
    if link is None:
        raise ClusterError("the cluster is not enabled on this node")
    return link


async def forward(request: web.Request, target: str, call: ApiCall) -> web.Response:
    """Send ``call`` to node ``target`` and answer with its reply (503 if it does not answer)."""
    link = _link(request.app[NODE])
    within = request.app[REQUEST_TIMEOUT]
    body = call.body
    if len(body) > PART:  # the parts first, then the call with the last one
        upload = uuid.uuid4().hex
        for start in range(0, len(body) - PART, PART):
            part = ApiCall("", "", [], body[start : start + PART], "", upload=upload, last=False)
            reply = await _send(link, target, part, within)
            if reply.status != 202:
                return _response(reply)
        call = msgspec.structs.replace(call, body=body[start + PART :], upload=upload)
    return _response(await _send(link, target, call, within))


async def _send(link: ClusterLink, target: str, call: ApiCall, within: float) -> ApiReply:
    payload = encode(call)
    limit = link.client.max_payload
    if len(payload) > limit:
        raise InvalidRequest(
            f"the request is {len(payload)} bytes, above the cluster's message limit "
            f"({limit} bytes): send it to node {target!r} itself",
            details={"node": target, "max_bytes": limit},
        )
    deadline = time.monotonic() + min(within, STARTING_WAIT)
    try:
        while True:
            try:
                return decode_reply(await link.bus.request(api_subject(target), payload, within))
            except LookupError:  # the bus's NoResponders: nobody serves the subject
                # A live node that does not serve its API yet is starting (or its subscription
                # has not reached this node's server yet): ask again for a short while.
                member = link.membership.get(target)
                live = member is not None and member.state in ("alive", "suspect")
                if not live or time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(STARTING_RETRY)
    except (LookupError, TimeoutError, msgspec.DecodeError) as error:
        member = link.membership.get(target)
        state = "unknown" if member is None else member.state
        raise ClusterError(
            f"node {target!r} ({state}) does not answer: {error or 'no reply in time'}",
            details={"node": target, "node_state": state},
        ) from None


def _response(reply: ApiReply) -> web.Response:
    headers = {"Location": reply.location} if reply.location else None
    response = web.Response(status=reply.status, body=reply.body, headers=headers)
    if reply.content_type:
        response.content_type = reply.content_type
    return response


async def _call_of(request: web.Request, query: list[tuple[str, str]]) -> ApiCall:
    body = await request.read() if request.can_read_body else b""
    ctype = request.headers.get("Content-Type", "")
    return ApiCall(request.method, request.path, query, body, ctype)


@web.middleware
async def remote_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Send a request for an agent hosted on another node to that node (module docstring)."""
    name = request.match_info.get("name")
    if name is None or not request.path.startswith(PREFIX + "/"):
        return await handler(request)
    node = request.app[NODE]
    link = node.cluster
    if link is None or link.registry is None:
        return await handler(request)
    wanted = request.query.get("node")
    if wanted is not None:
        query = [(key, value) for key, value in request.query.items() if key != "node"]
        if wanted != link.name:
            if link.membership.get(wanted) is None and wanted not in link.registry.nodes():
                raise InvalidRequest(
                    f"node: no node called {wanted!r} in the cluster", details={"field": "node"}
                )
            return await forward(request, wanted, await _call_of(request, query))
        request = request.clone(rel_url=request.rel_url.with_query(query))
        return await handler(request)
    if node.agents.hosts(name):
        return await handler(request)
    owner = link.registry.owner(name)
    if owner is None or owner == link.name:
        return await handler(request)
    return await forward(request, owner, await _call_of(request, list(request.query.items())))


def internal_app(node: Node) -> web.Application:
    """The agents API (and the redrive of a dead letter this node keeps) as the other nodes
    reach it (no authentication, no forwarding)."""
    from caxton.api.agents import agent_routes  # (agents imports this module)
    from caxton.api.messages import redrive_route

    networking = node.config.networking
    app = web.Application(
        middlewares=[error_middleware], client_max_size=networking.max_request_size
    )
    app[NODE] = node
    app[REQUEST_TIMEOUT] = networking.request_timeout
    app[MAX_REQUEST_SIZE] = networking.max_request_size
    add_routes(app, [*agent_routes(), *debug_routes(), *redrive_route()])
    return app


class Parts:
    """The parts of large calls still coming: at most `MAX_UPLOADS` at a time, each at most
    ``limit`` bytes, each forgotten `PARTS_TTL` seconds after its last part."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._uploads: dict[str, tuple[float, list[bytes], int]] = {}

    def add(self, upload: str, part: bytes, last: bool) -> bytes | ApiReply:
        """Keep ``part``: a 202 reply, an error reply, or (``last``) the whole body."""
        now = time.monotonic()
        for key, (seen, _, _) in list(self._uploads.items()):
            if now - seen > PARTS_TTL:
                del self._uploads[key]
        _, parts, size = self._uploads.pop(upload, (now, [], 0))
        size += len(part)
        if size > self.limit:
            return error_reply(
                413, "PAYLOAD_TOO_LARGE", "the body is above networking.max_request_size"
            )
        parts.append(part)
        if last:
            return b"".join(parts)
        if len(self._uploads) >= MAX_UPLOADS:
            return error_reply(503, "UNAVAILABLE", "too many large calls in progress; retry")
        self._uploads[upload] = (now, parts, size)
        return ApiReply(202, "", b"")


class AgentApiResponder:
    """Answers the other nodes' `ApiCall` for this node's agents (module docstring)."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._tasks = TaskSet("cluster agent API", log=log)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._subscription: Subscription | None = None
        self._directory: Path | None = None
        self._parts = Parts(node.config.networking.max_request_size)

    async def start(self) -> None:
        """Listen on the private socket and subscribe to this node's API subject."""
        link = _link(self._node)
        self._directory = Path(tempfile.mkdtemp(prefix="caxton-api-"))
        socket = str(self._directory / "api.sock")
        try:
            self._runner = web.AppRunner(internal_app(self._node), access_log=None)
            await self._runner.setup()
            await web.UnixSite(self._runner, socket).start()
            within = aiohttp.ClientTimeout(total=self._node.config.networking.request_timeout + 5)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=socket), timeout=within
            )
            self._subscription = await link.client.subscribe(
                api_subject(link.name), cb=self._on_call
            )
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop answering, finish the calls in progress, close the socket (idempotent)."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):  # gone with the connection
                await subscription.unsubscribe()
        await self._tasks.drain(self._node.config.networking.request_timeout + 1.0)
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        directory, self._directory = self._directory, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    async def _on_call(self, message: Msg) -> None:
        # signed and checked as the cluster bus does (a call without this cluster's
        # signature gets no answer; the answer is signed for the caller to check)
        if _link(self._node).bus.signer.accepts(message.subject, message.headers, message.data):
            self._tasks.start(self._answer(message), "cluster agent API call")

    async def _answer(self, message: Msg) -> None:
        reply = encode(await self.handle(message.data))
        link = _link(self._node)
        headers = link.bus.signer.headers("reply:" + message.subject, reply)
        with contextlib.suppress(Exception):  # the caller went away: nothing to answer
            await link.client.publish(message.reply, reply, headers=headers)

    async def handle(self, payload: bytes) -> ApiReply:
        """The reply to one encoded `ApiCall` (malformed input is a 400 reply)."""
        try:
            call = decode_call(payload)
        except msgspec.DecodeError as error:
            return error_reply(400, "INVALID_REQUEST", f"malformed cluster API call: {error}")
        if call.upload:
            whole = self._parts.add(call.upload, call.body, call.last)
            if isinstance(whole, ApiReply):
                return whole
            call = msgspec.structs.replace(call, body=whole)
        path = call.path
        agents = path == PREFIX or path.startswith(PREFIX + "/")
        if call.method not in _METHODS or not (agents or _REDRIVE.fullmatch(path)):
            return error_reply(400, "INVALID_REQUEST", "not an agent API call", path=path[:200])
        session = self._session
        if session is None:
            return error_reply(503, "UNAVAILABLE", "this node is stopping")
        headers = {"Content-Type": call.content_type} if call.content_type else {}
        try:
            url = URL("http://node").with_path(path).with_query(call.query)
            async with session.request(
                call.method, url, data=call.body or None, headers=headers
            ) as response:
                body = await response.read()
                return ApiReply(
                    response.status,
                    response.headers.get("Content-Type", ""),
                    body,
                    response.headers.get("Location"),
                )
        except TimeoutError:
            return error_reply(503, "UNAVAILABLE", "the node did not answer in time")
        except (ValueError, TypeError, aiohttp.ClientError) as error:
            return error_reply(400, "INVALID_REQUEST", f"cannot make that request: {error}")
