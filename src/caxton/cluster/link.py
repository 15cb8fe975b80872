"""`ClusterLink`: what a node holds of the cluster: its NATS (own child or ``nats_url``) and client.

::

    link = ClusterLink(config.coordination, api_address="10.0.0.1:8080", agents=count)
    await link.start()      # the child healthy, the client connected, membership beating
    link.bus, link.membership
    ...
    await link.aclose()     # ``left`` announced, the client closed, then the child (SIGTERM)

`Node` makes one only with ``cluster_enabled = true`` and imports this module only then: a
single node never loads nats-py. `not_joined` is what ``/ready`` reports until the node has
joined: the child healthy, the client connected, membership started, its own heartbeat heard
back through NATS (its subscription works end to end; `start` waits a little for it), and
every condition added with `add_join_check`. `status` is the admin listener's ``cluster``
field; `metric_samples` the metrics (`caxton.observability.snapshot` records);
`publish_member_events` hands every member change to the node's event stream (`telemetry`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client

from caxton.clock import SYSTEM_CLOCK, Clock
from caxton.cluster import telemetry
from caxton.cluster.bus import NatsBus
from caxton.cluster.conflicts import conflict_event
from caxton.cluster.directory import Directory, FixedDirectory
from caxton.cluster.identity import node_name
from caxton.cluster.membership import SUSPECT_AFTER, MemberChange, Membership
from caxton.cluster.natsconf import NatsEndpoint, RouteTls
from caxton.cluster.natsd import NatsServer
from caxton.cluster.registry import Registry
from caxton.cluster.signing import BusSigner
from caxton.cluster.telemetry import Sample
from caxton.config.schema import CoordinationConfig, NetworkingConfig, mask_url_password
from caxton.errors import ClusterError

if TYPE_CHECKING:
    from caxton.agents.service import AgentService

__all__ = ["ClusterLink"]

log = logging.getLogger("caxton.cluster")

#: Seconds the first connection to this node's NATS may take (attempts included).
CONNECT_TIMEOUT = 5.0
#: Seconds between reconnection attempts (forever: the child is restarted by its supervisor).
RECONNECT_WAIT = 0.2
#: Seconds the announcement of ``left`` may take to reach this node's server.
LEAVE_FLUSH_TIMEOUT = 1.0
#: Seconds during which the same client error is logged only once (reconnecting repeats it).
ERROR_LOG_INTERVAL = 10.0
#: Seconds `start` waits for the node to hear its own first heartbeat.
HEAR_SELF_WAIT = 2.0
#: Seconds the node start waits for the registry's first pulls, beyond one gossip interval.
REGISTRY_SYNC_WAIT = 2.0


class ClusterLink:
    """This node's NATS server (when it runs one) and its client connection."""

    def __init__(
        self,
        config: CoordinationConfig,
        *,
        clock: Clock = SYSTEM_CLOCK,
        api_address: str = "",
        agents: Callable[[], int] = lambda: 0,
        networking: NetworkingConfig | None = None,
    ) -> None:
        """``api_address``: where peers reach this node's HTTP API (in its heartbeat);
        ``agents``: how many agents this node hosts now (in its heartbeat); ``networking``:
        its certificates secure the routes when ``tls_enabled``."""
        data_dir = config.data_dir
        tls = None if networking is None else RouteTls.from_networking(networking)
        # Making the server reads or makes the node name and finds the binary (both may raise).
        self.server = (
            None
            if config.nats_url is not None
            else NatsServer(config, data_dir, clock=clock, tls=tls)
        )
        self.name = (
            self.server.name if self.server is not None else node_name(config.node_name, data_dir)
        )
        self._config = config
        self._clock = clock
        self._client: Client | None = None
        self._join_checks: list[Callable[[], str | None]] = []
        self._closing = False
        self._connecting = False
        self._last_error: str | None = None
        self._logged: tuple[str, float] | None = None  # the last error logged, and when
        self._api_address = api_address
        self._agents = agents
        self._bus: NatsBus | None = None
        self._membership: Membership | None = None
        self._counted: Membership | None = None  # read by the metrics, also after `aclose`
        #: Which node hosts which agent: the cluster's registry once it runs (a fixed, empty
        #: directory until then).
        self.directory: Directory = FixedDirectory()
        #: The cluster's agent registry (`start_registry`; None until then).
        self.registry: Registry | None = None

    @property
    def client(self) -> Client:
        """The connected NATS client (raises before `start`)."""
        if self._client is None:
            raise ClusterError("the cluster link is not started")
        return self._client

    @property
    def bus(self) -> NatsBus:
        """The cluster's bus on this node's client (raises before `start`)."""
        if self._bus is None:
            raise ClusterError("the cluster link is not started")
        return self._bus

    @property
    def membership(self) -> Membership:
        """This node's membership (raises before `start`)."""
        if self._membership is None:
            raise ClusterError("the cluster link is not started")
        return self._membership

    @property
    def endpoint(self) -> NatsEndpoint:
        if self.server is not None:
            return self.server.endpoint
        assert self._config.nats_url is not None
        return NatsEndpoint(self._config.nats_url)

    def add_join_check(self, check: Callable[[], str | None]) -> None:
        """Add a condition for "joined": `check` returns why not, or None (membership's hook)."""
        self._join_checks.append(check)

    async def start(self) -> None:
        """Start the child (unless ``nats_url``) and connect; raises `ClusterError`."""
        if self.server is not None:
            await self.server.start()
        client = Client()
        self._connecting = True
        try:
            # Reconnecting forever also makes the first connect retry forever: bound it here.
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await client.connect(**self._connect_options())
        except BaseException as exc:
            self._closing = True
            await client.close()
            if self.server is not None:
                await self.server.aclose()
            if isinstance(exc, Exception):
                raise self._connect_error(exc) from exc
            raise
        finally:
            self._connecting = False
        self._client = client
        secret = self._config.cluster_secret
        self._bus = bus = NatsBus(
            client, BusSigner(None if secret is None else secret.reveal(), clock=self._clock)
        )
        self._membership = membership = Membership(
            self.name,
            (self._api_address, self._cluster_address()),
            bus,
            clock=self._clock,
            probe_interval=self._config.probe_interval,
            agents=self._agents,
        )
        try:
            await membership.start()
        except BaseException:
            await self.aclose()
            raise
        self._counted = membership
        await self._hear_self(membership)
        log.info(
            "cluster: connected to NATS",
            extra={
                "node_name": self.name,
                "nats": mask_url_password(self.endpoint.client_url),
                "nats_server_pid": None if self.server is None else self.server.pid,
            },
        )

    async def _hear_self(self, membership: Membership) -> None:
        """Wait (bounded) until this node's first heartbeat came back through NATS."""
        if not await membership.wait_heard_self(HEAR_SELF_WAIT):
            log.warning(
                "cluster: %s has not heard its own heartbeat back through NATS within %g s; "
                "/ready answers 503 until it does",
                self.name,
                HEAR_SELF_WAIT,
            )

    def publish_member_events(self, publish: Callable[[dict[str, Any]], None]) -> None:
        """Call `publish` with a ``member`` event (`telemetry.member_event`) on every change."""

        def on_change(change: MemberChange) -> None:
            publish(telemetry.member_event(change, self._clock.wall()))

        self.membership.add_listener(on_change)

    def metric_samples(self) -> Iterator[Sample]:
        """Metric records for the observability layer's snapshot collector (`telemetry`)."""
        return telemetry.samples(self._counted, self.server)

    async def start_registry(
        self, agents: AgentService, publish: Callable[[dict[str, Any]], None]
    ) -> Registry:
        """Start the shared agent registry over this node's ``agents`` (after they were
        restored), wait until it has the other nodes' lists (at most one ``gossip_interval``
        plus `REGISTRY_SYNC_WAIT`; ``/ready`` waits for the rest) and make it the `directory`;
        ``publish`` puts its conflict events on the node's event stream."""
        registry = Registry(
            self.name,
            self.membership.incarnation,
            self.bus,
            local=agents,
            clock=self._clock,
            gossip_interval=self._config.gossip_interval,
        )
        agents.changes.add(registry.changed)
        agents.hosted_elsewhere = registry.hosted_elsewhere
        registry.stop_local = agents.stop
        registry.add_conflict_listener(lambda conflict: publish(conflict_event(conflict)))
        self.membership.add_listener(registry.on_member)
        await registry.start()
        # The others' lists first (one gossip interval for their digests, then the pulls): a
        # deploy this node accepts is checked against the names the cluster has already.
        await registry.wait_synced(self._config.gossip_interval + REGISTRY_SYNC_WAIT)
        self.add_join_check(registry.not_synced)
        self.registry = registry
        self.directory = registry
        return registry

    def _cluster_address(self) -> str:
        advertise = self._config.advertise_addr
        return str(self._config.bind_addr if advertise == "auto" else advertise)

    def _connect_options(self) -> dict[str, Any]:
        return self.endpoint.connect_options() | {
            "name": self.name,
            "connect_timeout": 2.0,  # one attempt (nats-py types these as int; floats work)
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": RECONNECT_WAIT,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }

    def _connect_error(self, exc: Exception) -> ClusterError:
        where = mask_url_password(self.endpoint.client_url)
        why = self._last_error or str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            why = f"not connected within {CONNECT_TIMEOUT:g} s ({why})"
        fix = (
            "check [coordination] nats_url and that NATS answers there"
            if self.server is None
            else "this node's own nats-server did not accept its client"
        )
        return ClusterError(f"cannot connect to NATS at {where}: {why}; {fix}")

    async def aclose(self) -> None:
        """Announce ``left``, close the client, then stop the child. Idempotent."""
        self._closing = True
        registry, self.registry = self.registry, None
        if registry is not None:
            await registry.aclose()
        membership, self._membership = self._membership, None
        try:
            if membership is not None:
                await membership.leave()
                if self._client is not None and self._client.is_connected:
                    # Our server has taken ``left`` once it answers a ping: it is queued
                    # for the routes before the server is told to stop.
                    await self._client.flush(timeout=LEAVE_FLUSH_TIMEOUT)  # type: ignore[arg-type]
        except Exception as exc:  # NATS is gone: the peers will see this node dead instead
            log.warning("cluster: could not announce leaving: %s", exc)
        client, self._client = self._client, None
        try:
            if client is not None and not client.is_closed:
                await client.close()
        finally:
            if self.server is not None:
                await self.server.aclose()

    def not_joined(self) -> str | None:
        """Why this node has not joined the cluster (None: it has)."""
        if self.server is not None and not self.server.up:
            return "the node's nats-server is not running"
        client = self._client
        if client is None or not client.is_connected:
            return "not connected to NATS"
        membership = self._membership
        if membership is None or not membership.started:
            return "membership not started"
        if not membership.heard_self:
            return "this node has not heard its own heartbeat back through NATS yet"
        if (unheard := membership.unheard) > SUSPECT_AFTER:
            return (
                f"this node has not heard its last {unheard} heartbeats back through NATS "
                "(its subscription is broken)"
            )
        for check in self._join_checks:
            if (reason := check()) is not None:
                return reason
        return None

    async def status(self) -> dict[str, Any]:
        """What an operator wants to see of the cluster (the admin ``/status`` field)."""
        client = self._client
        body: dict[str, Any] = {
            "node_name": self.name,
            "joined": self.not_joined() is None,
            "connected": client is not None and client.is_connected,
            "nats_url": mask_url_password(self.endpoint.client_url),
            "members": self._members(),
        }
        server = self.server
        if server is None:
            return body
        body |= {
            "nats_server_pid": server.pid,
            "monitor_port": server.monitor_port,
            "restarts": server.restarts,
            "routes": None,
        }
        if server.up:
            try:
                routez = await server.monitor("/routez")
                body["routes"] = int(routez.get("num_routes", len(routez.get("routes", []))))
                body["peers"] = sorted({route["remote_name"] for route in routez["routes"]})
            except (OSError, TimeoutError, ValueError, KeyError, TypeError):
                pass  # the child is restarting: routes stay None
        return body

    def _members(self) -> list[dict[str, Any]]:
        """Every member this node knows, itself included: name, state, since, incarnation."""
        membership = self._membership
        if membership is None:
            return []
        return [
            {
                "name": member.name,
                "state": member.state,
                "since": member.since,
                "incarnation": member.incarnation,
            }
            for member in membership.members()
        ]

    async def _on_error(self, exc: Exception) -> None:
        text = str(exc) or type(exc).__name__
        self._last_error = text
        if self._connecting:
            return  # the first connect reports its own error
        if "permissions violation" in text.lower():
            log.error("cluster: NATS refused an operation: %s", text)
            return
        now = self._clock.monotonic()
        logged = self._logged
        if logged is not None and logged[0] == text and now - logged[1] < ERROR_LOG_INTERVAL:
            return
        self._logged = (text, now)
        log.warning("cluster: NATS client error: %s", text)

    async def _on_disconnected(self) -> None:
        if self._closing:  # nats-py calls this on close() too
            return
        log.warning("cluster: disconnected from NATS; reconnecting")

    async def _on_reconnected(self) -> None:
        log.info("cluster: reconnected to NATS")
