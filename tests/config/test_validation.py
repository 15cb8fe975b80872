"""Bad configurations: each kind of mistake gets an error naming file, key and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from caxton.config import load_config
from caxton.errors import ConfigError

from .conftest import SECRET, WriteConfig


def errors_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    """The error lines of loading `path`, each checked to start with the file name."""
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ or {})
    error = info.value
    assert error.details["file"] == str(path)
    lines: list[str] = error.details["errors"]
    assert str(error) == "\n".join(lines)
    assert all(line.startswith(f"{path}: ") for line in lines)
    return [line.removeprefix(f"{path}: ") for line in lines]


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        pytest.param(
            "[runtime]\nmax_agent = 5",
            '[runtime] unknown key "max_agent"; did you mean "max_agents"?',
            id="unknown-key",
        ),
        pytest.param(
            "[runtime]\nzzz = 5",
            '[runtime] unknown key "zzz"',
            id="unknown-key-no-guess",
        ),
        pytest.param(
            "[runtme]\nmax_agents = 5",
            "unknown section [runtme]; did you mean [runtime]?",
            id="unknown-section",
        ),
        pytest.param("runtime = 5", "runtime: expected a table [runtime], got 5", id="not-a-table"),
        pytest.param(
            '[runtime]\nexecution_timeout = "30 seconds"',
            'runtime.execution_timeout: expected a duration such as "30s", "200ms", "5m", '
            '"1h30m" or a number of seconds, got "30 seconds"',
            id="duration",
        ),
        pytest.param(
            '[runtime]\nexecution_timeout = "0s"',
            'runtime.execution_timeout: expected a duration above zero such as "30s" or '
            '"200ms", got "0s"',
            id="zero-duration",
        ),
        pytest.param(
            '[runtime]\nwasm_memory_limit = "512 megabytes"',
            'runtime.wasm_memory_limit: expected a size such as "512MB", "64KB", "1GB" or a '
            'number of bytes (units B, KB, MB, GB, TB or KiB..TiB), got "512 megabytes"',
            id="size",
        ),
        pytest.param(
            "[runtime]\nmax_agents = true",
            "runtime.max_agents: expected a whole number, got true",
            id="bool-is-not-int",
        ),
        pytest.param(
            '[runtime]\nmax_agents = "1000"',
            'runtime.max_agents: expected a whole number, got "1000"',
            id="string-is-not-int",
        ),
        pytest.param(
            "[runtime]\nmax_agents = 0",
            "runtime.max_agents: expected a whole number of at least 1, got 0",
            id="int-range",
        ),
        pytest.param(
            "[runtime]\nmemory_pressure_threshold = 1.5",
            "runtime.memory_pressure_threshold: expected a number from 0 to 1, got 1.5",
            id="fraction",
        ),
        pytest.param(
            "[observability]\ntrace_sample_rate = -0.1",
            "observability.trace_sample_rate: expected a number from 0 to 1, got -0.1",
            id="sample-rate",
        ),
        pytest.param(
            '[runtime]\ncpu_quota = "eight"',
            'runtime.cpu_quota: expected a number of CPU cores above 0, such as 8, "8.0" or '
            '"500m", got "eight"',
            id="cpu-quota",
        ),
        pytest.param(
            '[networking]\nbind_address = "0.0.0.0:70000"',
            'networking.bind_address: expected an address "host:port" such as "0.0.0.0:8080" '
            'or "[::1]:8080" (the port must be 1..65535), got "0.0.0.0:70000"',
            id="port-range",
        ),
        pytest.param(
            '[networking]\nbind_address = "8080"',
            'networking.bind_address: expected an address "host:port" such as "0.0.0.0:8080" '
            'or "[::1]:8080", got "8080"',
            id="no-host",
        ),
        pytest.param(
            '[networking]\nbind_address = "::1:8080"',
            'networking.bind_address: expected an address "host:port" such as "0.0.0.0:8080" '
            'or "[::1]:8080" (put an IPv6 address in brackets), got "::1:8080"',
            id="bare-ipv6",
        ),
        pytest.param(
            '[coordination]\nseeds = ["caxton-node-1:7946", "caxton_node_2"]',
            'coordination.seeds: item 2: expected an address "host:port" such as '
            '"0.0.0.0:8080" or "[::1]:8080", got "caxton_node_2"',
            id="seed",
        ),
        pytest.param(
            '[coordination]\nadvertise_addr = "automatic"',
            'coordination.advertise_addr: expected an address "host:port" such as '
            '"0.0.0.0:8080" or "[::1]:8080", got "automatic"',
            id="advertise",
        ),
        pytest.param(
            '[coordination]\njournal_mode = "wall"',
            "coordination.journal_mode: expected one of DELETE, MEMORY, OFF, PERSIST, "
            'TRUNCATE, WAL, got "wall"',
            id="journal-mode",
        ),
        pytest.param(
            '[observability]\nlog_format = "xml"',
            'observability.log_format: expected one of json, text, got "xml"',
            id="log-format",
        ),
        pytest.param(
            '[observability]\nlog_rotation = "weekly"',
            'observability.log_rotation: expected one of daily, hourly, never, got "weekly"',
            id="log-rotation",
        ),
        pytest.param(
            '[observability]\nlog_level = "verbose"',
            "observability.log_level: expected one of debug, info, warn, warning, error, "
            'critical, got "verbose"',
            id="log-level",
        ),
        pytest.param(
            "[observability]\nhistogram_buckets = [0.1, 0.05, 1.0]",
            "observability.histogram_buckets: expected a non-empty array of strictly "
            "increasing numbers above 0, got [0.1, 0.05, 1.0]",
            id="buckets-order",
        ),
        pytest.param(
            "[observability]\nhistogram_buckets = [0.1, -1]",
            "observability.histogram_buckets: item 2: expected a number above 0, got -1",
            id="buckets-negative",
        ),
        pytest.param(
            '[observability]\nmetrics_prefix = "caxton-prod"',
            'observability.metrics_prefix: expected a Prometheus name prefix such as "caxton" '
            '([a-zA-Z_][a-zA-Z0-9_]*), got "caxton-prod"',
            id="metrics-prefix",
        ),
        pytest.param(
            '[observability]\notlp_endpoint = "jaeger:14268"',
            "observability.otlp_endpoint: expected an http(s) URL such as "
            '"http://otel-collector:4318" or a grpc:// URL such as "grpc://otel-collector:4317", '
            'got "jaeger:14268"',
            id="otlp-url",
        ),
        pytest.param(
            '[security]\ncors_methods = ["GET", "FETCH"]',
            "security.cors_methods: item 2: expected an HTTP method (GET, HEAD, POST, PUT, "
            'DELETE, CONNECT, OPTIONS, TRACE, PATCH), got "FETCH"',
            id="cors-method",
        ),
        pytest.param(
            '[security]\ncors_origins = ["https://dash.example.com/app"]',
            "security.cors_origins: item 1: expected an origin such as "
            '"https://dashboard.example.com" or "*", got "https://dash.example.com/app"',
            id="cors-origin",
        ),
        pytest.param(
            '[runtime]\nexecution_timeout = "${EXEC_TIMEOUT}"',
            "runtime.execution_timeout: ${EXEC_TIMEOUT} is used but EXEC_TIMEOUT is not set "
            "in the environment (write ${EXEC_TIMEOUT:-default} to give a default)",
            id="unset-variable",
        ),
        pytest.param(
            '[observability]\nlog_file = "${LOG_DIR"',
            'observability.log_file: a "${" must be followed by a variable name and "}", as in '
            '"${JWT_SECRET}" or "${LOG_DIR:-/var/log}" (write "$${" for a literal "${")',
            id="malformed-variable",
        ),
        pytest.param(
            '[runtime]\nwasm_memory_limit = "8GB"\nmemory_limit = "16GB"',
            "runtime.wasm_memory_limit: 8GB is more than a 32-bit WebAssembly memory can hold "
            "(4GB)",
            id="wasm32-memory",
        ),
        pytest.param(
            '[runtime]\nwasm_memory_limit = "1GB"\nmemory_limit = "512MB"',
            "runtime.wasm_memory_limit: 1GB is more than runtime.memory_limit (512MB), so no "
            "agent could reach its limit",
            id="agent-above-node-memory",
        ),
        pytest.param(
            '[networking]\nmetrics_address = "0.0.0.0:8080"',
            "networking.metrics_address: 0.0.0.0:8080 is already used by "
            "networking.bind_address (127.0.0.1:8080)",
            id="listener-clash",
        ),
        pytest.param(
            "[security]\nauth_enabled = true",
            "security.jwt_secret: auth_enabled = true needs a JWT secret; set jwt_secret = "
            '"${JWT_SECRET}" and export JWT_SECRET',
            id="auth-without-secret-key",
        ),
        pytest.param(
            '[security]\nauth_enabled = true\njwt_secret = "${JWT_SECRET}"',
            "security.jwt_secret: auth_enabled = true needs a JWT secret, but JWT_SECRET is "
            "not set in the environment",
            id="auth-with-unset-secret",
        ),
        pytest.param(
            '[security]\nauth_enabled = true\njwt_secret = "${EMPTY:-}"',
            "security.jwt_secret: auth_enabled = true needs a JWT secret, but the value is empty",
            id="auth-with-empty-secret",
        ),
        pytest.param(
            "[networking]\ntls_enabled = true",
            "networking.tls_cert_path: tls_enabled = true needs tls_cert_path\n"
            "networking.tls_key_path: tls_enabled = true needs tls_key_path",
            id="tls-without-paths",
        ),
        pytest.param(
            '[security]\nauth_enabled = true\njwt_secret = "short"',
            "security.jwt_secret: the JWT secret must be at least 8 characters (the node would "
            "refuse to start with it)",
            id="auth-with-a-secret-serve-refuses",
        ),
        pytest.param(
            '[networking]\ntls_client_auth = "required"',
            'networking.tls_client_auth: "required" needs tls_enabled = true',
            id="client-auth-without-tls",
        ),
        pytest.param(
            '[networking]\ntls_client_auth = "sometimes"',
            'networking.tls_client_auth: expected one of none, optional, required, got "sometimes"',
            id="client-auth-unknown-mode",
        ),
    ],
)
def test_bad_value(write_config: WriteConfig, toml: str, error: str) -> None:
    assert errors_of(write_config(toml + "\n")) == error.split("\n")


def test_all_errors_are_collected(write_config: WriteConfig) -> None:
    path = write_config(
        '[runtime]\nmax_agent = 5\nexecution_timeout = "soon"\n'
        '[networking]\nbind_address = "nowhere"\n'
        '[security]\nauth_enabled = true\njwt_secret = "${JWT_SECRET}"\n'
    )
    lines = errors_of(path)
    assert [line.split(":")[0].split(" ")[0] for line in lines] == [
        "[runtime]",
        "runtime.execution_timeout",
        "networking.bind_address",
        "security.jwt_secret",
    ]


def test_bad_override_names_the_variable(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            write_config("[runtime]\n"),
            environ={"CAXTON_METRICS_ENABLED": "maybe", "CAXTON_LOG_LEVEL": "loud"},
        )
    assert info.value.details["errors"] == [
        'CAXTON_LOG_LEVEL: expected one of debug, info, warn, warning, error, critical, got "loud"',
        'CAXTON_METRICS_ENABLED: expected true/false, 1/0, yes/no or on/off, got "maybe"',
    ]


def test_missing_tls_key_is_named(write_config: WriteConfig, tmp_path: Path) -> None:
    cert = tmp_path / "server.crt"
    cert.write_text("PEM\n")
    path = write_config(
        "[networking]\ntls_enabled = true\n"
        f'tls_cert_path = "{cert}"\ntls_key_path = "{tmp_path}/server.key"\n'
        f'tls_ca_path = "{tmp_path}"\n'
    )
    assert errors_of(path) == [
        f"networking.tls_key_path: file {tmp_path}/server.key does not exist",
        f"networking.tls_ca_path: {tmp_path} is not a file",
    ]


def test_tls_paths_are_not_checked_when_tls_is_off(write_config: WriteConfig) -> None:
    path = write_config('[networking]\ntls_enabled = false\ntls_cert_path = "/nope.crt"\n')
    assert load_config(path, environ={}).networking.tls_cert_path == Path("/nope.crt")


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "production.toml"
    with pytest.raises(ConfigError, match=f"^{missing}: no such configuration file$"):
        load_config(missing, environ={})
    with pytest.raises(
        ConfigError, match=r"no such configuration file \(from CAXTON_CONFIG_PATH\)"
    ):
        load_config(environ={"CAXTON_CONFIG_PATH": str(missing)})


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, environ={})


def test_invalid_toml_names_line_and_column(write_config: WriteConfig) -> None:
    path = write_config("[runtime]\nmax_agents = 10\nexecution_timeout = 30s\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value).startswith(f"{path}: line 3, column 23: invalid TOML: ")
    assert (info.value.details["line"], info.value.details["column"]) == (3, 23)
    assert info.value.details["file"] == str(path)


def test_repeated_table_explains_merging(write_config: WriteConfig) -> None:
    path = write_config('[runtime]\nmax_agents = 1\n\n[runtime]\ngc_interval = "60s"\n')
    with pytest.raises(ConfigError, match=r"line 4.*merge its keys into one \[section\]"):
        load_config(path, environ={})


def test_not_utf8(write_config: WriteConfig) -> None:
    path = write_config("")
    path.write_bytes(b"[runtime]\nmax_agents = 1 # \xff\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    "toml",
    [
        f'[security]\nauth_enabled = true\njwt_secret = "{SECRET}"\njwt_expiry = "forever"\n',
        '[security]\nauth_enabled = true\njwt_secret = "${JWT_SECRET}"\ncors_methods = ["GOT"]\n',
        "[security]\njwt_secret = 12345678\n",
        f'[security]\njwt_secret = "${{JWT_SECRET}}{SECRET}${{"\n',
    ],
)
def test_secret_never_appears_in_errors(write_config: WriteConfig, toml: str) -> None:
    path = write_config(toml)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"JWT_SECRET": SECRET})
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.details)
    assert "12345678" not in str(info.value)


def test_client_auth_needs_the_ca_and_names_the_file(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    cert = tmp_path / "server.crt"
    cert.write_text("PEM\n")
    path = write_config(
        "[networking]\ntls_enabled = true\n"
        f'tls_cert_path = "{cert}"\ntls_key_path = "{cert}"\ntls_client_auth = "required"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.message == (
        f'{path}: networking.tls_client_auth: "required" needs tls_ca_path (the CA that signs '
        "the client certificates)"
    )
    ca = tmp_path / "ca.pem"
    ca.write_text("PEM\n")
    config = load_config(
        write_config(
            "[networking]\ntls_enabled = true\n"
            f'tls_cert_path = "{cert}"\ntls_key_path = "{cert}"\ntls_ca_path = "{ca}"\n'
            'tls_client_auth = "Optional"\n'
        ),
        environ={},
    )
    assert config.networking.tls_client_auth == "optional"
