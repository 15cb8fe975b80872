"""The nats-server configuration written from `[coordination]` (docs/configuration.md).

The mapping, one key at a time:

* ``bind_addr`` -> ``cluster.listen`` (the route port, 7946 by default);
* ``advertise_addr`` -> ``cluster.advertise``; ``"auto"`` leaves it unset and nats-server
  advertises the address it listens on, or this host's addresses when it listens on all;
* ``seeds`` -> ``cluster.routes`` as ``nats-route://host:port``: the same list on every node,
  since a server ignores a route to itself; DNS names resolve each time a route is dialled;
* ``probe_interval`` -> ``cluster.ping_interval``, with ``ping_max`` = `PING_MAX`: a peer that
  goes silent is dropped after about ``PING_MAX * probe_interval`` (nats-server's own defaults
  take two minutes, 61 s measured, to notice a silent partition);
* ``cluster_secret`` -> ``cluster.authorization`` and the credentials inside every route URL;
* ``node_name`` -> ``server_name``;
* ``[networking] tls_enabled`` -> ``cluster.tls`` with the node's certificate and key
  (``tls_cert_path``, ``tls_key_path``) and ``tls_ca_path`` as the CA that signs every node's
  certificate; route TLS is mutual (``verify``): each side shows its certificate and checks
  the other's. Without ``tls_ca_path`` the peers are checked against the system's trust store.

Clients (only this node's) connect on loopback with a token made per process; the monitoring
port (``/healthz``, ``/varz``, ``/routez``) is on loopback too. Port 0 lets nats-server choose
a free one (it writes the ports it bound to a ports file). The whole file is JSON, which
nats-server reads, so no value ever needs nats-conf escaping.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from caxton.config.schema import Address, CoordinationConfig, NetworkingConfig, mask_url_password

__all__ = [
    "CLUSTER_NAME",
    "PING_MAX",
    "ROUTE_USER",
    "NatsEndpoint",
    "NatsSettings",
    "RouteTls",
    "render",
    "render_text",
    "route_url",
]

#: The NATS cluster name: fixed, so that every Caxton node's server joins the same cluster.
CLUSTER_NAME = "caxton"
#: Route pings a peer may leave unanswered before its route is closed.
PING_MAX = 3
#: The user name routes present when ``cluster_secret`` is set.
ROUTE_USER = "caxton-route"
#: Seconds a route's TLS handshake may take.
TLS_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class RouteTls:
    """The node's certificate, key and CA for its routes (from ``[networking]``)."""

    cert: Path
    key: Path
    ca: Path | None = None  # None: the system's trust store

    @classmethod
    def from_networking(cls, networking: NetworkingConfig) -> RouteTls | None:
        """The route TLS of `networking` (None unless ``tls_enabled``)."""
        cert, key = networking.tls_cert_path, networking.tls_key_path
        if not networking.tls_enabled or cert is None or key is None:
            return None
        return cls(cert, key, networking.tls_ca_path)

    def render(self) -> dict[str, Any]:
        """The ``cluster.tls`` block."""
        block: dict[str, Any] = {
            "cert_file": str(self.cert),
            "key_file": str(self.key),
            "verify": True,
            "timeout": TLS_TIMEOUT,
        }
        if self.ca is not None:
            block["ca_file"] = str(self.ca)
        return block


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsSettings:
    """Everything the nats-server configuration is made from (none of it read from disk)."""

    server_name: str
    token: str = field(repr=False)  # the per-process client secret
    client_port: int = 0  # 0: chosen free by nats-server
    monitor_port: int = 0  # 0: chosen free by nats-server
    ports_dir: Path  # where nats-server writes the ports it bound
    cluster_listen: Address
    advertise: Address | None = None  # None: "auto"
    seeds: tuple[str, ...] = ()
    probe_interval: float = 1.0  # seconds
    cluster_secret: str | None = field(default=None, repr=False)
    tls: RouteTls | None = None

    @classmethod
    def from_config(
        cls,
        config: CoordinationConfig,
        *,
        server_name: str,
        token: str,
        ports_dir: Path,
        client_port: int = 0,
        monitor_port: int = 0,
        tls: RouteTls | None = None,
    ) -> NatsSettings:
        """The settings for `config`'s keys plus what the node decides at start."""
        advertise = config.advertise_addr
        secret = config.cluster_secret
        return cls(
            server_name=server_name,
            token=token,
            client_port=client_port,
            monitor_port=monitor_port,
            ports_dir=ports_dir,
            cluster_listen=config.bind_addr,
            advertise=None if advertise == "auto" else advertise,
            seeds=config.seeds,
            probe_interval=config.probe_interval,
            cluster_secret=None if secret is None else secret.reveal(),
            tls=tls,
        )


@dataclass(frozen=True, slots=True)
class NatsEndpoint:
    """Where this node's NATS client connects, and the secret it shows (None: in the URL)."""

    client_url: str
    token: str | None = field(default=None, repr=False)

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``."""
        options: dict[str, Any] = {"servers": [self.client_url]}
        if self.token is not None:
            options["token"] = self.token
        return options

    def __repr__(self) -> str:
        return f"NatsEndpoint(client_url={mask_url_password(self.client_url)!r})"


def _port(port: int) -> int:
    return port if port else -1  # -1 is nats-server's "any free port"


def _duration(seconds: float) -> str:
    """A Go duration, in whole milliseconds (at least 1 ms)."""
    return f"{max(1, round(seconds * 1000))}ms"


def route_url(seed: str, secret: str | None) -> str:
    """The ``nats-route://`` URL of one seed (``host:port`` as written in ``seeds``)."""
    if secret is None:
        return f"nats-route://{seed}"
    return f"nats-route://{ROUTE_USER}:{quote(secret, safe='')}@{seed}"


def render(settings: NatsSettings) -> dict[str, Any]:
    """The nats-server configuration as a JSON-ready dict."""
    cluster: dict[str, Any] = {
        "name": CLUSTER_NAME,
        "listen": str(settings.cluster_listen),
        "ping_interval": _duration(settings.probe_interval),
        "ping_max": PING_MAX,
    }
    if settings.advertise is not None:
        cluster["advertise"] = str(settings.advertise)
    if settings.seeds:
        cluster["routes"] = [route_url(seed, settings.cluster_secret) for seed in settings.seeds]
    if settings.cluster_secret is not None:
        cluster["authorization"] = {"user": ROUTE_USER, "password": settings.cluster_secret}
    if settings.tls is not None:
        cluster["tls"] = settings.tls.render()
    return {
        "server_name": settings.server_name,
        "host": "127.0.0.1",
        "port": _port(settings.client_port),
        "http": f"127.0.0.1:{_port(settings.monitor_port)}",
        "ports_file_dir": str(settings.ports_dir),
        "logtime": False,  # the node's logger stamps the lines it passes on
        "authorization": {"token": settings.token},
        "cluster": cluster,
    }


def render_text(settings: NatsSettings) -> str:
    """`render` as the text of a configuration file."""
    return json.dumps(render(settings), indent=2) + "\n"
