"""Loading the seed's files: every key becomes the typed value an operator meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from caxton.config import Address, Config, Secret, load_config
from caxton.errors import ConfigError

from .conftest import FIXTURES, SECRET, WriteConfig

MB = 1024**2
GB = 1024**3


def test_production_file_every_key(production_file: Path) -> None:
    config = load_config(production_file, environ={"JWT_SECRET": SECRET})
    root = production_file.parent.parent

    runtime = config.runtime
    assert runtime.max_agents == 1000
    assert runtime.max_concurrent_executions == 100
    assert runtime.wasm_memory_limit == 512 * MB
    assert runtime.wasm_stack_limit == 1 * MB
    assert runtime.execution_timeout == 30.0
    assert runtime.agent_idle_timeout == 300.0
    assert runtime.cpu_quota == 8.0
    assert runtime.memory_limit == 16 * GB
    assert runtime.temp_storage_limit == 10 * GB
    assert runtime.agent_startup_timeout == 10.0
    assert runtime.agent_shutdown_timeout == 5.0
    assert runtime.gc_interval == 60.0
    assert runtime.memory_pressure_threshold == 0.8
    assert runtime.agent_memory_reclaim is True

    net = config.networking
    assert net.bind_address == Address("0.0.0.0", 8080)
    assert net.metrics_address == Address("0.0.0.0", 9090)
    assert net.admin_address == Address("127.0.0.1", 8081)
    assert net.max_connections == 10000
    assert (net.connection_timeout, net.request_timeout, net.keepalive_timeout) == (30, 60, 60)
    assert net.tls_enabled is True
    assert net.tls_cert_path == root / "config" / "server.crt"
    assert net.tls_key_path == root / "config" / "server.key"
    assert net.tls_ca_path == root / "config" / "ca.crt"

    coord = config.coordination
    assert coord.local_state_path == root / "data" / "local.db"
    assert coord.data_dir == root / "data"
    assert coord.journal_mode == "WAL"
    assert coord.cluster_enabled is True
    assert coord.bind_addr == Address("0.0.0.0", 7946)
    assert coord.advertise_addr == "auto"
    assert coord.seeds == ("caxton-node-1:7946", "caxton-node-2:7946", "caxton-node-3:7946")
    assert coord.gossip_interval == 0.2
    assert coord.probe_interval == 1.0

    obs = config.observability
    assert obs.log_level == "info"
    assert obs.log_format == "json"
    assert obs.log_file == root / "logs" / "caxton.log"
    assert obs.log_rotation == "daily"
    assert obs.log_retention_days == 30
    assert obs.enable_metrics is True
    assert obs.metrics_prefix == "caxton"
    assert obs.histogram_buckets == (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
    assert obs.enable_tracing is True
    assert obs.trace_sample_rate == 0.1
    assert obs.otlp_endpoint == "http://jaeger-collector:14268/api/traces"
    assert obs.otlp_timeout == 10.0

    sec = config.security
    assert sec.auth_enabled is True
    assert sec.jwt_secret == Secret(SECRET)
    assert sec.jwt_expiry == 3600.0
    assert sec.api_key_header == "X-API-Key"
    assert sec.rate_limit_enabled is True
    assert sec.rate_limit_per_second == 100.0
    assert sec.rate_limit_burst == 200
    assert sec.cors_enabled is True
    assert sec.cors_origins == ("https://dashboard.example.com",)
    assert sec.cors_methods == ("GET", "POST", "PUT", "DELETE")

    assert config.source == production_file.resolve()


def test_production_file_verbatim_reports_every_missing_tls_file() -> None:
    """On a machine without the seed's certificates, all three are named in one error."""
    with pytest.raises(ConfigError) as info:
        load_config(FIXTURES / "production.toml", environ={"JWT_SECRET": SECRET})
    assert info.value.details["errors"] == [
        f"{FIXTURES / 'production.toml'}: networking.tls_cert_path: "
        "file /opt/caxton/config/server.crt does not exist",
        f"{FIXTURES / 'production.toml'}: networking.tls_key_path: "
        "file /opt/caxton/config/server.key does not exist",
        f"{FIXTURES / 'production.toml'}: networking.tls_ca_path: "
        "file /opt/caxton/config/ca.crt does not exist",
    ]
    assert str(info.value) == "\n".join(info.value.details["errors"])


def test_kubernetes_configmap_file() -> None:
    config = load_config(FIXTURES / "k8s.toml", environ={})
    assert config.runtime.max_agents == 1000
    assert config.runtime.wasm_memory_limit == 512 * MB
    assert config.runtime.execution_timeout == 30.0
    assert config.networking.bind_address == Address("0.0.0.0", 8080)
    assert config.networking.metrics_address == Address("0.0.0.0", 9090)
    assert config.observability.enable_tracing is True
    assert config.observability.otlp_endpoint == "http://jaeger-collector:14268/api/traces"
    assert config.coordination.local_state_path == Path("/data/local.db")
    assert config.coordination.cluster_enabled is True
    assert config.coordination.bind_addr == Address("0.0.0.0", 7946)
    assert config.coordination.gossip_interval == 0.2
    # Everything else keeps the embedded default.
    assert config.runtime.max_concurrent_executions == 4
    assert config.security.auth_enabled is False


def test_performance_block_file() -> None:
    config = load_config(FIXTURES / "performance.toml", environ={})
    assert config.runtime.max_agents == 2000
    assert config.runtime.max_concurrent_executions == 200
    assert config.runtime.wasm_memory_limit == 1 * GB
    assert config.runtime.memory_pressure_threshold == 0.8


def test_embedded_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(environ={})
    assert config.source is None
    assert config.coordination.local_state_path == tmp_path / "caxton-data" / "local.db"
    assert config.coordination.cluster_enabled is False
    assert config.networking.bind_address == Address("127.0.0.1", 8080)
    assert config.networking.metrics_address == Address("127.0.0.1", 9090)
    assert config.networking.admin_address == Address("127.0.0.1", 8081)
    assert config.networking.tls_enabled is False
    assert config.security.auth_enabled is False
    assert config.security.jwt_secret is None
    assert Config.embedded_default().coordination.local_state_path == Path("caxton-data/local.db")


def test_empty_file_is_the_embedded_default(write_config: WriteConfig) -> None:
    path = write_config("")
    assert load_config(path, environ={}) == load_config(environ={}).replace(source=path.resolve())


def test_config_path_from_environment(write_config: WriteConfig) -> None:
    path = write_config("[runtime]\nmax_agents = 7\n")
    config = load_config(environ={"CAXTON_CONFIG_PATH": str(path)})
    assert config.runtime.max_agents == 7
    assert config.source == path.resolve()


def test_explicit_path_wins_over_environment(write_config: WriteConfig, tmp_path: Path) -> None:
    path = write_config("[runtime]\nmax_agents = 7\n")
    config = load_config(path, environ={"CAXTON_CONFIG_PATH": str(tmp_path / "nope.toml")})
    assert config.runtime.max_agents == 7


def test_os_environ_is_the_default_environment(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config('[observability]\nlog_format = "${FORMAT}"\n')
    monkeypatch.setenv("FORMAT", "json")
    monkeypatch.setenv("CAXTON_CONFIG_PATH", str(path))
    assert load_config().observability.log_format == "json"


def test_relative_paths_resolve_against_working_directory(
    write_config: WriteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(
        '[coordination]\nlocal_state_path = "./state/local.db"\n'
        '[observability]\nlog_file = "logs/caxton.log"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path, environ={})
    assert config.coordination.local_state_path == elsewhere / "state" / "local.db"
    assert config.observability.log_file == elsewhere / "logs" / "caxton.log"


def test_substitution_and_defaults(write_config: WriteConfig) -> None:
    path = write_config(
        "[runtime]\n"
        'execution_timeout = "${EXEC_TIMEOUT:-45s}"\n'
        'max_agents = "${MAX_AGENTS:-50}"\n'
        'agent_memory_reclaim = "${RECLAIM}"\n'
        "[observability]\n"
        'otlp_endpoint = "${OTLP_ENDPOINT}"\n'
        'log_file = "${LOG_DIR:-/var/log/caxton}/caxton.log"\n'
        "[coordination]\n"
        'seeds = ["${SEED_HOST}:7946", "caxton-node-2:7946"]\n'
        'local_state_path = "/data/$${NODE}/local.db"\n'
    )
    environ = {"OTLP_ENDPOINT": "http://jaeger:14268/api/traces", "RECLAIM": "off"}
    config = load_config(path, environ=environ | {"SEED_HOST": "node-1", "MAX_AGENTS": "12"})
    assert config.runtime.execution_timeout == 45.0
    assert config.runtime.max_agents == 12
    assert config.runtime.agent_memory_reclaim is False
    assert config.observability.otlp_endpoint == "http://jaeger:14268/api/traces"
    assert config.observability.log_file == Path("/var/log/caxton/caxton.log")
    assert config.coordination.seeds == ("node-1:7946", "caxton-node-2:7946")
    assert config.coordination.local_state_path == Path("/data/${NODE}/local.db")


def test_auth_disabled_tolerates_unset_jwt_secret(write_config: WriteConfig) -> None:
    path = write_config('[security]\nauth_enabled = false\njwt_secret = "${JWT_SECRET}"\n')
    assert load_config(path, environ={}).security.jwt_secret is None


@pytest.mark.parametrize(
    ("variables", "level", "metrics"),
    [
        ({"CAXTON_LOG_LEVEL": "DEBUG"}, "debug", True),
        ({"CAXTON_LOG_LEVEL": "warn"}, "warning", True),
        ({"CAXTON_METRICS_ENABLED": "false"}, "error", False),
        ({"CAXTON_METRICS_ENABLED": "off", "CAXTON_LOG_LEVEL": "critical"}, "critical", False),
        ({"CAXTON_METRICS_ENABLED": "", "CAXTON_LOG_LEVEL": ""}, "error", True),
    ],
)
def test_environment_overrides_win(
    write_config: WriteConfig, variables: dict[str, str], level: str, metrics: bool
) -> None:
    path = write_config('[observability]\nlog_level = "error"\nenable_metrics = true\n')
    config = load_config(path, environ=variables)
    assert config.observability.log_level == level
    assert config.observability.enable_metrics is metrics


def test_overrides_apply_to_the_embedded_default() -> None:
    config = load_config(environ={"CAXTON_METRICS_ENABLED": "0", "CAXTON_LOG_LEVEL": "debug"})
    assert config.observability.enable_metrics is False
    assert config.observability.log_level == "debug"


@pytest.mark.parametrize(
    ("toml", "section", "key", "value"),
    [
        ('bind_address = "[::1]:8080"', "networking", "bind_address", Address("::1", 8080)),
        ('bind_address = "[::]:80"', "networking", "bind_address", Address("::", 80)),
        ('bind_address = "localhost:1"', "networking", "bind_address", Address("localhost", 1)),
        (
            'admin_address = "caxton-node-1.internal:65535"',
            "networking",
            "admin_address",
            Address("caxton-node-1.internal", 65535),
        ),
        (
            'advertise_addr = "10.0.0.5:7946"',
            "coordination",
            "advertise_addr",
            Address("10.0.0.5", 7946),
        ),
        ('journal_mode = "wal"', "coordination", "journal_mode", "WAL"),
        ('journal_mode = "Truncate"', "coordination", "journal_mode", "TRUNCATE"),
        ('log_level = "WARN"', "observability", "log_level", "warning"),
        ('log_level = "Critical"', "observability", "log_level", "critical"),
        ('log_format = "JSON"', "observability", "log_format", "json"),
        ("cpu_quota = 2", "runtime", "cpu_quota", 2.0),
        ("cpu_quota = 0.5", "runtime", "cpu_quota", 0.5),
        ('cpu_quota = "500m"', "runtime", "cpu_quota", 0.5),
        ("wasm_stack_limit = 65536", "runtime", "wasm_stack_limit", 65536),
        ("execution_timeout = 0.25", "runtime", "execution_timeout", 0.25),
        ("fuel = 1000000", "runtime", "fuel", 1_000_000),
        ('cors_methods = ["get", "Patch"]', "security", "cors_methods", ("GET", "PATCH")),
        (
            'cors_origins = ["*", "http://localhost:3000/"]',
            "security",
            "cors_origins",
            ("*", "http://localhost:3000"),
        ),
        ("rate_limit_per_second = 2.5", "security", "rate_limit_per_second", 2.5),
        ("memory_pressure_threshold = 1", "runtime", "memory_pressure_threshold", 1.0),
        (
            "histogram_buckets = [1, 2.5, 10]",
            "observability",
            "histogram_buckets",
            (1.0, 2.5, 10.0),
        ),
    ],
)
def test_accepted_spellings(
    write_config: WriteConfig, toml: str, section: str, key: str, value: object
) -> None:
    config = load_config(write_config(f"[{section}]\n{toml}\n"), environ={})
    assert getattr(getattr(config, section), key) == value
