"""Serving an aiohttp application on one address, with connection limits and TLS.

`Listener` binds one application to one `Address`. It enforces what aiohttp does not do on its
own: ``max_connections`` (connections beyond it are closed at once and counted) and
``connection_timeout`` (a connection that has not sent its first request by then is closed).
``keepalive_timeout`` is aiohttp's own idle timeout. A port already in use raises
`ListenError`, which the CLI turns into a clear message and exit code.

Probe slots: ``max_connections`` idle sockets must not take ``/health`` down with them (a
liveness probe that fails gets the process restarted, which is what the attacker wants). With
`ConnectionLimits.probe_slots`, a connection that arrives when the others are all in use is
still accepted on one of those few slots, on stricter terms: it must send its request within
`PROBE_TIMEOUT`, only `ConnectionLimits.probe_paths` (``/health``, ``/ready``) are served on
it (anything else answers ``503 UNAVAILABLE`` with ``Retry-After``), and it is closed after one
response. An attacker who fills those slots too loses each of them within a second.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from caxton.api.errors import error_response
from caxton.api.http_errors import use_json_errors
from caxton.config import Address
from caxton.errors import Error

__all__ = ["PROBE_TIMEOUT", "ConnectionLimits", "ListenError", "Listener"]

#: Seconds a connection on a probe slot has to send its request.
PROBE_TIMEOUT = 1.0

log = logging.getLogger("caxton.http")


class ListenError(Error):
    """The address cannot be listened on (in use, not permitted, not local)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    """What one listener allows."""

    max_connections: int
    connection_timeout: float
    keepalive_timeout: float
    shutdown_timeout: float
    #: connections accepted beyond max_connections for health probes only (see the module)
    probe_slots: int = 0
    #: what a connection on a probe slot may ask for
    probe_paths: frozenset[str] = frozenset()


class _Guard:
    """Counts connections on an aiohttp `Server` and enforces the limits."""

    def __init__(self, server: web.Server, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.rejected = 0
        self._server = server
        #: connections that have not sent their first request yet -> their expiry timer
        self._waiting: dict[RequestHandler, asyncio.TimerHandle] = {}
        #: connections on a probe slot
        self._probes: set[RequestHandler] = set()
        self._made = server.connection_made
        self._lost = server.connection_lost
        self._factory = server.request_factory
        self._handler = server.request_handler
        # Instance attributes shadow the methods; this is the one place we hook aiohttp.
        server.connection_made = self._connection_made  # type: ignore[method-assign]
        server.connection_lost = self._connection_lost  # type: ignore[method-assign]
        server.request_factory = self._request_factory
        if limits.probe_slots:
            server.request_handler = self._handle

    @property
    def active(self) -> int:
        return len(self._server.connections)

    def _connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        timeout = self.limits.connection_timeout
        if self.active - len(self._probes) >= self.limits.max_connections:
            if len(self._probes) >= self.limits.probe_slots:
                self.rejected += 1
                transport.abort()
                return
            self._probes.add(handler)
            timeout = min(timeout, PROBE_TIMEOUT)
        self._made(handler, transport)
        use_json_errors(handler)
        loop = asyncio.get_running_loop()
        self._waiting[handler] = loop.call_later(timeout, self._expire, handler, transport)

    def _connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        timer = self._waiting.pop(handler, None)
        if timer is not None:
            timer.cancel()
        self._probes.discard(handler)
        self._lost(handler, exc)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.protocol not in self._probes:
            return await self._handler(request)
        if request.path in self.limits.probe_paths:
            response = await self._handler(request)
        else:
            response = error_response(
                503,
                "UNAVAILABLE",
                f"the server has max_connections ({self.limits.max_connections}) connections "
                "open; only " + ", ".join(sorted(self.limits.probe_paths)) + " are answered "
                "until some close",
                {"max_connections": self.limits.max_connections},
                headers={"Retry-After": "1"},
            )
        response.force_close()
        return response

    def _expire(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        if self._waiting.pop(handler, None) is not None:
            transport.close()

    def _request_factory(self, *args: Any) -> Any:
        timer = self._waiting.pop(args[2], None)
        if timer is not None:
            timer.cancel()
        return self._factory(*args)


class Listener:
    """One application served on one address."""

    def __init__(
        self,
        app: web.Application,
        address: Address,
        *,
        name: str,
        limits: ConnectionLimits,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self.address = address
        self.name = name
        self.limits = limits
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None
        self._guard: _Guard | None = None
        self.bound_port: int | None = None

    @property
    def active_connections(self) -> int:
        """Connections open right now."""
        return self._guard.active if self._guard is not None else 0

    @property
    def rejected_connections(self) -> int:
        """Connections refused because `max_connections` were open."""
        return self._guard.rejected if self._guard is not None else 0

    async def start(self) -> None:
        """Bind and start serving; raises `ListenError` if the address cannot be used."""
        runner = web.AppRunner(
            self.app,
            access_log=None,
            keepalive_timeout=self.limits.keepalive_timeout,
            shutdown_timeout=self.limits.shutdown_timeout,
            handle_signals=False,
        )
        await runner.setup()
        self._runner = runner
        assert runner.server is not None
        self._guard = _Guard(runner.server, self.limits)
        site = web.TCPSite(
            runner,
            self.address.host,
            self.address.port,
            ssl_context=self.ssl_context,
            reuse_address=True,
            backlog=min(4096, max(128, self.limits.max_connections)),
        )
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            self._runner = None
            raise _listen_error(self.name, self.address, exc) from exc
        server = site._server
        if isinstance(server, asyncio.base_events.Server) and server.sockets:
            self.bound_port = server.sockets[0].getsockname()[1]
        scheme = "https" if self.ssl_context else "http"
        log.info(
            "%s listening on %s://%s",
            self.name,
            scheme,
            self.address,
            extra={"listener": self.name, "address": str(self.address)},
        )

    async def stop_accepting(self) -> None:
        """Close the listening socket; open connections go on."""
        if self._runner is not None:
            for site in list(self._runner.sites):
                srv = site._server
                if srv is not None:
                    srv.close()

    async def aclose(self) -> None:
        """Stop: finish in-flight requests (bounded by the shutdown timeout), then close."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def _listen_error(name: str, address: Address, exc: OSError) -> ListenError:
    if exc.errno == errno.EADDRINUSE:
        why = "the address is already in use (is another Caxton node or program on that port?)"
    elif exc.errno == errno.EACCES:
        why = "permission denied (ports below 1024 need privileges)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = "the address is not available on this machine"
    else:
        why = exc.strerror or str(exc)
    return ListenError(
        f"cannot listen on {address} for the {name}: {why}",
        details={"listener": name, "address": str(address), "errno": exc.errno},
    )
