"""The server process: a `Node` plus its listeners, metrics, logs and signal handling.

`Server` composes the leaves around the core: the HTTP API on ``bind_address``, Prometheus on
``metrics_address`` and the admin listener on ``admin_address``. Start order is chosen so a
misconfigured port fails fast and ``/health`` answers early: listeners bind first (``/ready``
says 503 until the node is started), then the node opens its state and starts its services.

Shutdown (SIGTERM or SIGINT): readiness turns false; after ``networking.drain_delay`` (0 by
default) the API stops accepting connections, in-flight requests and agent work drain within
``agent_shutdown_timeout``, then the node closes its state file and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from caxton.api.admin import create_admin_app
from caxton.api.app import create_app
from caxton.api.listener import ConnectionLimits, Listener, ListenError
from caxton.api.metrics_app import create_metrics_app
from caxton.api.remote import AgentApiResponder
from caxton.config import Config
from caxton.errors import ConfigError
from caxton.examples import EXAMPLES, examples_dir
from caxton.node import Node
from caxton.observability import Metrics, Tracing, configure_tracing
from caxton.runtime.tracing import SpanLog

if TYPE_CHECKING:
    from caxton.observability.span_process import SpanExportProcess

__all__ = ["Server", "check_listen_policy", "run_server"]

log = logging.getLogger("caxton.server")

#: Seconds allowed on top of agent_shutdown_timeout for closing listeners and the state file.
SHUTDOWN_MARGIN = 2.0
#: Seconds a stopping node waits for the tracing collector to take the last spans: a healthy
#: one answers in milliseconds, a hung one would otherwise hold the exit for otlp_timeout.
TRACING_STOP_WAIT = 0.3
#: Seconds a stopping node gives its span export process to export the last spans of messages
#: and exit (a healthy collector takes them in milliseconds; a hung one is not waited out).
SPAN_PROCESS_STOP_WAIT = 0.5
#: Connections the API accepts beyond max_connections, for /health and /ready only.
API_PROBE_SLOTS = 8
#: Seconds a clustered node waits for its registry before it deploys the example agents.
EXAMPLES_SYNC_WAIT = 5.0
PROBE_PATHS = frozenset({"/health", "/ready"})


def check_listen_policy(config: Config) -> None:
    """Refuse what would expose an unauthenticated API; warn where a file asked for it.

    The embedded default (no config file) has authentication off, so it only listens on
    loopback. A config file that turns auth off and binds a public address is honoured (the
    operator chose it, e.g. behind a proxy that authenticates) but warned about.
    """
    net = config.networking
    if not net.admin_address.is_loopback:
        raise ConfigError(
            f"networking.admin_address: the admin listener must be on a loopback address "
            f"(127.0.0.1 or ::1), got {net.admin_address}",
        )
    if config.security.auth_enabled:
        return
    exposed = [a for a in (net.bind_address, net.metrics_address) if not a.is_loopback]
    if not exposed:
        return
    where = ", ".join(str(a) for a in exposed)
    if config.source is None:
        raise ConfigError(
            f"refusing to listen on {where}: authentication is off in the embedded default, so "
            "the API would be open to the network. Use a loopback address, or write a config "
            "file with [security] auth_enabled = true and a jwt_secret.",
        )
    log.warning(
        "authentication is off and the API listens on %s: anyone who can reach it can deploy "
        "agents",
        where,
    )


_CLIENT_AUTH = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    net = config.networking
    if not net.tls_enabled:
        return None
    assert net.tls_cert_path is not None
    assert net.tls_key_path is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(net.tls_cert_path, net.tls_key_path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"networking.tls_cert_path / tls_key_path: cannot load the TLS certificate "
            f"{net.tls_cert_path} with key {net.tls_key_path}: {exc}"
        ) from exc
    if net.tls_ca_path is not None:
        try:
            context.load_verify_locations(net.tls_ca_path)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"networking.tls_ca_path: cannot load the CA bundle {net.tls_ca_path}: {exc}"
            ) from exc
    # Client certificates (the config check guarantees tls_ca_path for the other two modes).
    context.verify_mode = _CLIENT_AUTH[net.tls_client_auth]
    return context


def _node_name(config: Config) -> str | None:
    """The node's name for the spans' ``service.instance.id``: ``node_name``, or in a cluster
    the name kept in the data directory (made now if this is the first start)."""
    coordination = config.coordination
    if coordination.node_name is not None or not coordination.cluster_enabled:
        return coordination.node_name
    if not (config.observability.enable_tracing and config.observability.otlp_endpoint):
        return None
    from caxton.cluster.identity import node_name

    return node_name(None, coordination.data_dir)


class Server:
    """One running Caxton process: node, listeners and metrics."""

    def __init__(
        self,
        config: Config,
        *,
        registry: CollectorRegistry | None = None,
        deploy_examples: bool = False,
    ) -> None:
        self.config = config
        self.deploy_examples = deploy_examples
        self.registry = registry if registry is not None else CollectorRegistry()
        obs = config.observability
        self.metrics = Metrics.create(
            self.registry, prefix=obs.metrics_prefix, buckets=obs.histogram_buckets
        )
        self.node = Node(config)
        self.tracing: Tracing = configure_tracing(obs, node_id=_node_name(config))
        #: With tracing on: builds and exports the spans of traced messages in a child process
        #: (`caxton.observability.span_process`).
        self.span_export: SpanExportProcess | None = None
        if self.tracing.provider is not None and self.tracing.processor is not None:
            from caxton.observability.span_process import SpanExportProcess

            self.node.spans = SpanLog()
            self.span_export = SpanExportProcess(
                self.node.spans,
                obs,
                node_id=_node_name(config),
                counts=self.tracing.processor.counts,
            )
        self.listeners: list[Listener] = []
        self._stopping = asyncio.Event()
        self._responder: AgentApiResponder | None = None

    @property
    def api(self) -> Listener:
        """The API listener (the first one)."""
        return self.listeners[0]

    def _limits(self, max_connections: int, *, probe_slots: int = 0) -> ConnectionLimits:
        net = self.config.networking
        return ConnectionLimits(
            max_connections=max_connections,
            connection_timeout=net.connection_timeout,
            keepalive_timeout=net.keepalive_timeout,
            shutdown_timeout=self.config.runtime.agent_shutdown_timeout,
            probe_slots=probe_slots,
            probe_paths=PROBE_PATHS,
        )

    async def start(self) -> None:
        """Bind every listener, then start the node. Raises on any failure, leaving nothing open."""
        check_listen_policy(self.config)
        net = self.config.networking
        api_app = create_app(
            self.node,
            observer=self.metrics.observe_http,
            # No span middleware at all when tracing is off (it costs ~8 µs a request).
            tracer=self.tracing.tracer if self.tracing.enabled else None,
        )
        api = Listener(
            api_app,
            net.bind_address,
            name="API",
            limits=self._limits(net.max_connections, probe_slots=API_PROBE_SLOTS),
            ssl_context=_ssl_context(self.config),
        )
        self.listeners.append(api)
        self.metrics.http_connections_active.set_function(lambda: api.active_connections)
        if self.config.observability.enable_metrics:
            self.listeners.append(
                Listener(
                    create_metrics_app(self.registry, request_timeout=net.request_timeout),
                    net.metrics_address,
                    name="metrics listener",
                    limits=self._limits(256),
                )
            )
        self.listeners.append(
            Listener(
                create_admin_app(self.node),
                net.admin_address,
                name="admin listener",
                limits=self._limits(64),
            )
        )
        try:
            if self.span_export is not None:
                self.span_export.start()
            for listener in self.listeners:
                await listener.start()
            await self.node.start(prepare=self._prepare)
            self.metrics.register_snapshot_source("agents", self.node.agents.metric_samples)
            self.metrics.register_snapshot_source("messaging", self.node.messaging.metric_samples)
            self.metrics.register_snapshot_source("storage", self.node.storage.metric_samples)
            if self.tracing.enabled:  # caxton_trace_spans_*: exported, failed, dropped
                self.metrics.register_snapshot_source("tracing", self.tracing.metric_samples)
            if self.node.cluster is not None:  # only with cluster_enabled
                self.metrics.register_snapshot_source("cluster", self.node.cluster.metric_samples)
            registry = None if self.node.cluster is None else self.node.cluster.registry
            if registry is not None:
                from caxton.cluster.registry_stats import registry_samples

                self.metrics.register_snapshot_source(
                    "registry", lambda: registry_samples(registry)
                )
            if (remote := self.node.cluster_messages) is not None:
                self.metrics.register_snapshot_source("cluster_messages", remote.metric_samples)
        except BaseException:
            await self.aclose()
            raise

    async def _prepare(self, node: Node) -> None:
        """What runs before the node reports ready: the answers to the other nodes' calls for
        agents hosted here (a node that is ready answers them), then the example agents."""
        if node.cluster is not None:
            self._responder = AgentApiResponder(node)
            await self._responder.start()
        if self.deploy_examples:
            await self._deploy_examples(node)

    async def _deploy_examples(self, node: Node) -> None:
        """Deploy the bundled example agents that are not deployed yet (the quick start)."""
        from caxton.agents import DeployRequest

        directory = examples_dir()
        if directory is None:
            log.warning("no example agents in this installation; skipping them")
            return
        present = set(self.node.agents.names())
        registry = None if node.cluster is None else node.cluster.registry
        if registry is not None:  # what the other nodes host first (a name lives on one node)
            await registry.wait_synced(EXAMPLES_SYNC_WAIT)
        for example in EXAMPLES:
            if example.name in present or self.node.agents.hosted_elsewhere(example.name):
                continue  # here already, or on another node of the cluster
            wasm = (directory / example.file).read_bytes()
            await self.node.agents.deploy(
                DeployRequest(name=example.name, wasm=wasm, env=example.env)
            )
            log.info(
                "deployed example agent %s: %s",
                example.name,
                example.summary,
                extra={"agent": example.name},
            )

    def request_stop(self) -> None:
        """Ask the server to drain and stop (what SIGTERM and SIGINT do)."""
        self._stopping.set()

    async def wait_stopping(self) -> None:
        """Block until a stop is requested."""
        await self._stopping.wait()

    async def drain(self) -> None:
        """Stop accepting work, let in-flight work finish, then close everything.

        ``/ready`` turns 503 first. With ``networking.drain_delay``, the API goes on serving
        (answering ``Connection: close``) for that long, so a load balancer checking ``/ready``
        takes the node out before its listener closes: a request sent on a keep-alive
        connection just as the node closed it would get no answer at all.
        """
        self.node.begin_drain()
        delay = self.config.networking.drain_delay
        if delay > 0:
            log.info("draining: serving %.1fs more while balancers notice /ready", delay)
            await asyncio.sleep(delay)
        for listener in self.listeners[:1]:
            await listener.stop_accepting()
        await self.aclose()

    async def aclose(self) -> None:
        """Close the API first (finishing in-flight requests), then the node, then the rest."""
        listeners, self.listeners = self.listeners, []
        responder, self._responder = self._responder, None
        try:
            if listeners:
                await listeners[0].aclose()
            if responder is not None:
                await responder.aclose()
            await self.node.aclose()
        finally:
            for listener in listeners[1:]:
                await listener.aclose()
            await self._stop_tracing()

    async def _stop_tracing(self) -> None:
        if not self.tracing.enabled:
            return
        if self.span_export is not None:  # the last records become spans, then they go
            await asyncio.to_thread(self.span_export.close, SPAN_PROCESS_STOP_WAIT)
        if not await asyncio.to_thread(self.tracing.shutdown, TRACING_STOP_WAIT):
            log.warning(
                "tracing: the collector did not take the last spans within %.1fs of the stop; "
                "they are dropped",
                TRACING_STOP_WAIT,
                extra={"otlp_endpoint": self.config.observability.otlp_endpoint},
            )


async def run_server(
    config: Config,
    *,
    deploy_examples: bool = False,
    on_started: Callable[[Server], None] | None = None,
) -> None:
    """Run a node until SIGTERM or SIGINT, then drain within the shutdown timeout."""
    server = Server(config, deploy_examples=deploy_examples)
    loop = asyncio.get_running_loop()
    await server.start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    log.info(
        "caxton is ready",
        extra={
            "api": str(config.networking.bind_address),
            "config": str(config.source) if config.source else "embedded default",
        },
    )
    if on_started is not None:
        on_started(server)
    try:
        await server.wait_stopping()
        log.info("stopping: draining in-flight work")
        budget = (
            config.networking.drain_delay + config.runtime.agent_shutdown_timeout + SHUTDOWN_MARGIN
        )
        try:
            async with asyncio.timeout(budget):
                await server.drain()
        except TimeoutError:
            log.error("shutdown took longer than %.1fs; closing anyway", budget)
            await server.aclose()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("caxton stopped")


__all__ += ["ListenError"]
