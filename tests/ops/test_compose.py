"""deploy/docker-compose.yml and deploy/compose-cluster.yml, read for what they promise.

No Compose runs here (tests/ops/test_container.py runs the image itself, one node and three):
yamllint checks both files (tests/ops/test_kubernetes.py lints all of deploy/); this reads
them as Compose would, with the ``${VAR:?...}`` values given, and checks that each service
builds deploy/Dockerfile, keeps its state on its own volume, has a health check the image can
run, stops within its grace period, and that the configuration it mounts passes
``caxton config check`` with the environment it sets; and that the cluster's seeds are its
services' names.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from caxton.config import parse_duration
from caxton.server import SHUTDOWN_MARGIN
from tests.ops.configdiff import uncommented_changes
from tests.support import ROOT

DEPLOY = ROOT / "deploy"
SECRETS = {"JWT_SECRET": "j" * 40, "CLUSTER_SECRET": "c" * 40}


def _services(name: str) -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((DEPLOY / name).read_text())
    assert "version" not in compose  # obsolete in Compose v2
    services = compose["services"]
    assert isinstance(services, dict)
    for service in services.values():
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            if not source.startswith("."):
                assert source in compose["volumes"], f"volume {source} is not declared"
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment as Compose sets it, with the secrets given."""
    raw = service["environment"]
    pairs = dict(e.split("=", 1) for e in raw) if isinstance(raw, list) else dict(raw)
    env: dict[str, str] = {}
    for key, value in pairs.items():

        def given(match: re.Match[str]) -> str:
            return SECRETS[match.group(1)]

        env[key] = re.sub(r"\$\{([A-Z_]+):\?[^}]*\}", given, str(value))
    return env


def _mounted_config(service: dict[str, Any], env: dict[str, str]) -> Path:
    """The host file behind CAXTON_CONFIG_PATH, through the service's bind mounts."""
    path = PurePosixPath(env["CAXTON_CONFIG_PATH"])
    for volume in service["volumes"]:
        source, target, *mode = str(volume).split(":")
        if source.startswith(".") and path.is_relative_to(target):
            assert mode == ["ro"], "the configuration is mounted read-only"
            return DEPLOY / source / path.relative_to(target)
    raise AssertionError(f"{path} is on no bind mount")


def _check_service(service: dict[str, Any]) -> dict[str, Any]:
    """What every Caxton service must have; returns its configuration (parsed)."""
    assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python3", "-c"]
    assert "curl" not in " ".join(test)
    data = [v for v in service["volumes"] if v.split(":")[1] == "/data"]
    assert len(data) == 1
    env = _environment(service)
    config_path = _mounted_config(service, env)
    config = tomllib.loads(config_path.read_text())
    assert config["coordination"]["local_state_path"].startswith("/data/")
    assert "log_file" not in config["observability"]  # stderr, for `docker logs`
    probed = re.search(r"http://([^/]+)/(health|ready)'", test[3])
    assert probed is not None, test
    assert probed.group(1) == config["networking"]["admin_address"]
    # The node exits 0 before Compose's SIGKILL.
    budget = (
        parse_duration(config["networking"]["drain_delay"])
        + parse_duration(config["runtime"]["agent_shutdown_timeout"])
        + SHUTDOWN_MARGIN
    )
    assert parse_duration(service["stop_grace_period"]) > budget
    result = subprocess.run(
        [sys.executable, "-m", "caxton", "config", "check", str(config_path)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return config


def test_single_node_compose() -> None:
    (service,) = _services("docker-compose.yml").values()
    config = _check_service(service)
    assert service["ports"] == ["8080:8080", "9090:9090"]  # the guide's, without 4317
    env = _environment(service)
    assert env["CAXTON_LOG_LEVEL"] == "info"
    assert env["CAXTON_METRICS_ENABLED"] == "true"
    assert config["security"]["auth_enabled"] is True


def test_cluster_compose_seeds_are_its_services() -> None:
    services = _services("compose-cluster.yml")
    assert len(services) == 3
    volumes = set()
    for name, service in services.items():
        config = _check_service(service)
        coordination = config["coordination"]
        assert coordination["cluster_enabled"] is True
        port = coordination["bind_addr"].rsplit(":", 1)[1]
        assert coordination["seeds"] == [f"{n}:{port}" for n in services]
        env = _environment(service)
        assert env["NODE_NAME"] == name == service["hostname"]
        assert coordination["advertise_addr"] == f"${{NODE_NAME}}:{port}"
        assert coordination["cluster_secret"] == "${CLUSTER_SECRET}"
        assert env["CLUSTER_SECRET"] == SECRETS["CLUSTER_SECRET"]
        assert {"CAXTON_LOG_LEVEL", "CAXTON_METRICS_ENABLED", "JWT_SECRET"} <= env.keys()
        volumes.add(next(v for v in service["volumes"] if v.endswith(":/data")))
    assert len(volumes) == 3, "each node needs its own state"
    host_ports = [p.split(":")[0] for s in services.values() for p in s["ports"]]
    assert len(host_ports) == len(set(host_ports))


@pytest.mark.parametrize("name", ["docker-compose.yml", "compose-cluster.yml"])
def test_secrets_are_required_not_defaulted(name: str) -> None:
    """Compose refuses to start without the secrets rather than running with an empty one."""
    text = (DEPLOY / name).read_text()
    for secret in re.findall(r"\$\{([A-Z_]+)[^}]*\}", text):
        assert re.search(rf"\$\{{{secret}:\?", text), secret


@pytest.mark.parametrize("name", ["production.toml", "cluster.toml"])
def test_every_change_to_the_shipped_production_toml_is_commented(name: str) -> None:
    text = (DEPLOY / "compose" / name).read_text()
    assert uncommented_changes(text, "CONTAINER") == []
