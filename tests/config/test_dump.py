"""Rendering the effective config: masked for people, exact for a round trip through TOML."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caxton.config import Config, Secret, config_to_dict, dump_config, load_config

from .conftest import SECRET


def _production(production_file: Path) -> Config:
    return load_config(production_file, environ={"JWT_SECRET": SECRET})


def test_dict_renders_values_as_operators_write_them(production_file: Path) -> None:
    data = config_to_dict(_production(production_file))
    assert data["runtime"]["wasm_memory_limit"] == "512MB"
    assert data["runtime"]["memory_limit"] == "16GB"
    assert data["runtime"]["execution_timeout"] == "30s"
    assert data["runtime"]["agent_idle_timeout"] == "5m"
    assert data["runtime"]["cpu_quota"] == 8.0
    assert data["runtime"]["fuel"] is None
    assert data["coordination"]["gossip_interval"] == "200ms"
    assert data["coordination"]["advertise_addr"] == "auto"
    assert data["coordination"]["seeds"][0] == "caxton-node-1:7946"
    assert data["networking"]["bind_address"] == "0.0.0.0:8080"
    assert data["networking"]["tls_cert_path"].endswith("/config/server.crt")
    assert data["security"]["jwt_expiry"] == "1h"
    assert data["security"]["jwt_secret"] == "********"
    assert list(data) == ["runtime", "networking", "coordination", "observability", "security"]
    json.dumps(data)  # JSON-ready


def test_secrets_are_masked_everywhere_by_default(production_file: Path) -> None:
    config = _production(production_file)
    assert SECRET not in json.dumps(config_to_dict(config))
    assert SECRET not in dump_config(config)
    assert SECRET not in repr(config)
    assert SECRET not in str(config.security)
    assert config_to_dict(config, mask_secrets=False)["security"]["jwt_secret"] == SECRET


def test_dump_is_toml_that_loads_back_equal(production_file: Path, tmp_path: Path) -> None:
    config = _production(production_file)
    dumped = tmp_path / "effective.toml"
    dumped.write_text(dump_config(config, mask_secrets=False), encoding="utf-8")
    assert load_config(dumped, environ={}) == config.replace(source=dumped.resolve())


def test_embedded_default_dump_round_trip(tmp_path: Path) -> None:
    config = load_config(environ={})
    text = dump_config(config)
    assert text.startswith("# Effective Caxton configuration (from the embedded default).")
    dumped = tmp_path / "default.toml"
    dumped.write_text(text, encoding="utf-8")
    assert load_config(dumped, environ={}) == config.replace(source=dumped.resolve())
    assert "jwt_secret" not in tomllib.loads(text)["security"]


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    secret=st.text(min_size=8),  # MIN_SECRET_CHARS: shorter ones are refused
    timeout=st.floats(min_value=1e-6, max_value=1e9),
    size=st.integers(min_value=1, max_value=2**40),
    buckets=st.lists(st.floats(min_value=1e-6, max_value=1e6), min_size=1, unique=True).map(sorted),
)
def test_any_values_survive_dump_and_load(
    tmp_path: Path, secret: str, timeout: float, size: int, buckets: list[float]
) -> None:
    base = Config.embedded_default()
    config = base.replace(
        runtime=dataclasses.replace(base.runtime, execution_timeout=timeout, max_message_size=size),
        observability=dataclasses.replace(base.observability, histogram_buckets=tuple(buckets)),
        security=dataclasses.replace(base.security, jwt_secret=Secret(secret), auth_enabled=True),
    )
    dumped = tmp_path / "random.toml"
    dumped.write_text(dump_config(config, mask_secrets=False), encoding="utf-8")
    loaded = load_config(dumped, environ={})
    assert loaded.runtime == config.runtime
    assert loaded.observability == config.observability
    assert loaded.security == config.security


def test_config_show_has_one_header_naming_the_source_and_the_masking(
    production_file: Path,
) -> None:
    """It printed two header lines saying the same thing in different words."""
    from click.testing import CliRunner

    from caxton.cli import cli

    result = CliRunner().invoke(
        cli,
        ["config", "show", "--config", str(production_file)],
        env={"JWT_SECRET": "a-dump-test-secret-0123456789abcdef"},
    )
    assert result.exit_code == 0, result.output
    header = [line for line in result.stdout.splitlines() if line.startswith("#")]
    assert header == [
        f"# Effective Caxton configuration (from {production_file.resolve()}).",
        '# Secrets are masked ("********").',
    ]
    assert 'jwt_secret = "********"' in result.stdout
