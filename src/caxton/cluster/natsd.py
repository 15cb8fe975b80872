"""`NatsServer`: the node's own nats-server child, started, watched, restarted and stopped.

::

    async with NatsServer(config.coordination, data_dir) as server:
        client = await nats.connect(**server.endpoint.connect_options())

Start writes ``<data dir>/nats/nats-server.json`` (mode 0600: it holds the client token) from
`natsconf`, runs the binary (`_child.spawn`: it dies with the node, even on ``kill -9``) and
waits until ``/healthz`` answers. The client and monitoring ports are chosen free by
nats-server on the first start and kept for every restart, so a connected client reconnects
to the same URL. With ``tls`` (the node's certificates, ``[networking] tls_enabled``) the routes
are mutual TLS; a refused route (wrong ``cluster_secret``, a certificate of another CA) is
explained in one line by `routes` (`routelog.RouteDiagnosis`). A child that dies on its own
is restarted with backoff and counted in `restarts`; `aclose` sends SIGTERM and SIGKILL after
`stop_timeout`. `nats_endpoint` is the entry point for a node: it starts no child when
``[coordination] nats_url`` names an existing NATS deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import secrets
import signal
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

from caxton.clock import SYSTEM_CLOCK, Clock
from caxton.cluster import _child, _monitor, natsconf
from caxton.cluster._child import LOGGER
from caxton.cluster.binary import binary_hint, find_binary, route_port_in_use, start_hint
from caxton.cluster.identity import node_name
from caxton.cluster.natsconf import NatsEndpoint, RouteTls
from caxton.cluster.routelog import RouteDiagnosis
from caxton.config.schema import CoordinationConfig
from caxton.errors import ClusterError
from caxton.tasks import TaskSet

__all__ = ["NatsServer", "nats_endpoint", "route_warning"]

log = logging.getLogger("caxton.cluster")

_POLL = 0.01  # seconds between /healthz polls while starting
_STABLE = 30.0  # a child that ran this long restarts after the shortest backoff again


class _State(enum.Enum):
    UNSTARTED = "unstarted"
    RUNNING = "running"
    CLOSED = "closed"


class NatsServer:
    """The node's nats-server child (see the module docstring).

    Making one reads or makes the node name (`identity.node_name`) and finds the binary; both
    raise (`ConfigError`, `ClusterError`) with what to fix. The child is started by the
    event loop's thread, and ``PR_SET_PDEATHSIG`` follows that thread: run the loop in the
    thread that lives as long as the node (the main thread).
    """

    def __init__(
        self,
        config: CoordinationConfig,
        data_dir: Path,
        *,
        client_port: int = 0,
        monitor_port: int = 0,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        restart_backoff: tuple[float, float] = (0.1, 5.0),
        clock: Clock = SYSTEM_CLOCK,
        tls: RouteTls | None = None,
    ) -> None:
        self.name = node_name(config.node_name, data_dir)
        self.binary = find_binary(config.nats_server)
        self._config = config
        self._clock = clock
        self._dir = data_dir / "nats"
        self._client_port = client_port
        self._monitor_port = monitor_port
        self._token = secrets.token_urlsafe(32)
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._backoff = restart_backoff
        self._state = _State.UNSTARTED
        self._process: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        #: The supervisor and the log pump of the current child.
        self._tasks = TaskSet(f"nats-server {self.name}", log=LOGGER)
        self._tail: deque[str] = deque(maxlen=20)
        self._up = False
        #: Times the child died on its own and was started again (for a metric).
        self.restarts = 0
        #: The certificates of the routes (``[networking] tls_enabled``), if any.
        self.tls = tls
        #: Explains refused routes (wrong secret, certificates) from the child's log lines.
        self.routes = RouteDiagnosis(self.name, clock=clock)

    @property
    def endpoint(self) -> NatsEndpoint:
        """The client URL and token of this node's server."""
        return NatsEndpoint(f"nats://127.0.0.1:{self._client_port}", self._token)

    @property
    def client_url(self) -> str:
        return self.endpoint.client_url

    @property
    def monitor_port(self) -> int:
        return self._monitor_port

    @property
    def up(self) -> bool:
        """Whether the child runs and has answered ``/healthz`` since it was (re)started."""
        process = self._process
        return self._up and process is not None and process.returncode is None

    @property
    def pid(self) -> int | None:
        """The running child's process id (None while it is down)."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def monitor(self, path: str) -> dict[str, Any]:
        """A monitoring document of the server, such as ``/varz`` or ``/routez``."""
        async with asyncio.timeout(2.0):
            return await _monitor.get_json(self._monitor_port, path)

    async def __aenter__(self) -> NatsServer:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the child and wait until it is healthy, then supervise it.

        Raises:
            ClusterError: it could not start; the message names the binary, what to fix and
                the last lines it logged.
        """
        if self._state is not _State.UNSTARTED:
            raise ClusterError(f"this NatsServer is {self._state.value}; make a new one")
        self._state = _State.RUNNING
        if (warning := route_warning(self._config, self.tls)) is not None:
            log.warning("%s", warning)
        try:
            await self._launch()
        except BaseException:
            await self.aclose()
            raise
        self._supervisor = self._tasks.service(self._supervise(), f"nats-server {self.name}")

    async def aclose(self) -> None:
        """Stop supervising and stop the child (SIGTERM, SIGKILL after `stop_timeout`)."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._supervisor is not None:
            await self._tasks.stop(self._supervisor)
        await self._stop_child()
        await self._tasks.aclose()
        with contextlib.suppress(OSError):  # best effort: it holds a token no longer valid
            self._config_file.unlink()

    @property
    def _config_file(self) -> Path:
        return self._dir / "nats-server.json"

    def _write_config(self) -> None:
        settings = natsconf.NatsSettings.from_config(
            self._config,
            server_name=self.name,
            token=self._token,
            ports_dir=self._dir,
            client_port=self._client_port,
            monitor_port=self._monitor_port,
            tls=self.tls,
        )
        self._dir.mkdir(parents=True, exist_ok=True)
        file = self._config_file
        descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(natsconf.render_text(settings))

    async def _launch(self) -> None:
        """Start one child and wait until it answers ``/healthz``."""
        self._up = False
        try:
            self._write_config()
        except OSError as exc:
            raise ClusterError(
                f"cannot write the nats-server configuration {self._config_file}: "
                f"{exc.strerror or exc}; make the data directory writable"
            ) from exc
        self._tail.clear()
        try:
            process = await _child.spawn(self.binary, self._config_file)
        except OSError as exc:
            raise ClusterError(
                f"cannot run nats-server {self.binary}: {exc.strerror or exc}; "
                f"{binary_hint(self._config)}",
                details={"binary": str(self.binary)},
            ) from exc
        self._process = process
        self._pump = self._tasks.start(
            _child.pump_log(process, self._tail, name=self.name, observe=self.routes.observe),
            name="nats-server log",
        )
        try:
            async with asyncio.timeout(self._start_timeout):
                await self._wait_healthy(process)
            self._up = True
        except TimeoutError:
            await self._stop_child()
            raise self._start_error(
                f"did not answer /healthz within {self._start_timeout:g} s"
            ) from None
        except ClusterError:
            await self._stop_child()
            raise

    async def _wait_healthy(self, process: asyncio.subprocess.Process) -> None:
        while True:
            if process.returncode is not None:
                if self._pump is not None:  # let it log the last lines first
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self._pump), 1.0)
                raise self._start_error(f"exited with code {process.returncode} while starting")
            if not self._monitor_port or not self._client_port:
                self._read_ports(process.pid)
            elif await self._healthy():
                return
            await asyncio.sleep(_POLL)

    def _read_ports(self, pid: int) -> None:
        """The ports nats-server chose, from the file it writes once it listens."""
        for file in self._dir.glob(f"*_{pid}.ports"):
            with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
                ports = json.loads(file.read_text(encoding="utf-8"))
                client = int(ports["nats"][0].rsplit(":", 1)[1])
                monitor = int(ports["monitoring"][0].rsplit(":", 1)[1])
                self._client_port, self._monitor_port = client, monitor

    async def _healthy(self) -> bool:
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                status, _ = await _monitor.get(self._monitor_port, "/healthz")
            return status == 200
        return False

    def _start_error(self, what: str) -> ClusterError:
        lines = list(self._tail)
        hint = start_hint(lines, self._config)
        shown = "\n  ".join(lines[-8:]) or "(it logged nothing)"
        details: dict[str, object] = {"binary": str(self.binary), "log": lines}
        if route_port_in_use(lines):
            details["in_use"] = "coordination.bind_addr"  # the CLI exits 3, as for a listener
        return ClusterError(
            f"nats-server {self.binary} {what}{hint}; its last lines:\n  {shown}",
            details=details,
        )

    async def _supervise(self) -> None:
        """Restart the child whenever it dies on its own, with growing pauses."""
        delay = self._backoff[0]
        while True:
            process = self._process
            assert process is not None
            started = self._clock.monotonic()
            code = await process.wait()
            self._up = False
            await self._after_exit(process)
            if self._clock.monotonic() - started > _STABLE:
                delay = self._backoff[0]
            self.restarts += 1
            LOGGER.warning(
                "nats-server (pid %d) exited with code %s; starting it again in %.1f s",
                process.pid,
                code,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])
            try:
                await self._launch()
            except ClusterError as exc:
                LOGGER.error("%s", exc.message)

    async def _after_exit(self, process: asyncio.subprocess.Process) -> None:
        """Drain the log of a child that has exited and remove the ports file it left."""
        if self._pump is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pump, 1.0)
            self._pump = None
        for file in self._dir.glob(f"*_{process.pid}.ports"):
            with contextlib.suppress(FileNotFoundError):
                file.unlink()

    async def _stop_child(self) -> None:
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self._stop_timeout)
            except TimeoutError:
                LOGGER.warning("nats-server (pid %d) ignored SIGTERM; killing it", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        await self._after_exit(process)


def route_warning(config: CoordinationConfig, tls: RouteTls | None) -> str | None:
    """What is weak in how this node's routes are secured, for one warning at start."""
    if tls is not None and tls.ca is None:
        return (
            "cluster: routes use TLS and check the peers' certificates against the system's "
            "trust store: [networking] tls_ca_path is not set; set it to the CA that signs "
            "every node's certificate, or nodes with certificates of a private CA cannot join"
        )
    if tls is None and config.cluster_secret is None and not config.bind_addr.is_loopback:
        return (
            f"cluster: the routes on {config.bind_addr} take any node that reaches them: neither "
            "[coordination] cluster_secret nor [networking] tls_enabled is set; set the same "
            "cluster_secret on every node (and tls_enabled between machines)"
        )
    return None


@contextlib.asynccontextmanager
async def nats_endpoint(config: CoordinationConfig, data_dir: Path) -> AsyncIterator[NatsEndpoint]:
    """The NATS this node uses: ``nats_url`` when set, else its own `NatsServer` child."""
    if config.nats_url is not None:
        yield NatsEndpoint(config.nats_url)
        return
    async with NatsServer(config, data_dir) as server:
        yield server.endpoint
