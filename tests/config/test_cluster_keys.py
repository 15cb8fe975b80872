"""The `[coordination]` keys of the cluster on NATS: parsed, cross-checked, masked, overridden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from caxton.config import config_to_dict, dump_config, load_config
from caxton.config.schema import mask_url_password
from caxton.errors import ConfigError

from .conftest import WriteConfig

CLUSTER_SECRET = "cluster-secret-never-printed"


def test_the_keys_load(write_config: WriteConfig, tmp_path: Path) -> None:
    path = write_config(
        "[coordination]\n"
        'nats_server = "bin/nats-server"\n'
        'node_name = "caxton-node-1"\n'
        'cluster_secret = "${CLUSTER_SECRET}"\n'
    )
    coordination = load_config(path, environ={"CLUSTER_SECRET": CLUSTER_SECRET}).coordination
    assert coordination.nats_server == Path("bin/nats-server").absolute()
    assert coordination.node_name == "caxton-node-1"
    assert coordination.cluster_secret is not None
    assert coordination.cluster_secret.reveal() == CLUSTER_SECRET
    assert coordination.nats_url is None


def test_the_defaults_are_unset() -> None:
    coordination = load_config(environ={}).coordination
    assert coordination.nats_server is None
    assert coordination.nats_url is None
    assert coordination.node_name is None
    assert coordination.cluster_secret is None


@pytest.mark.parametrize(
    ("line", "error"),
    [
        pytest.param(
            'nats_url = "http://nats:4222"',
            'coordination.nats_url: expected a NATS URL such as "nats://nats.internal:4222"',
            id="http-scheme",
        ),
        pytest.param(
            'nats_url = "nats://:4222"', "coordination.nats_url: expected a NATS URL", id="no-host"
        ),
        pytest.param(
            'nats_url = "nats://nats:99999"',
            "coordination.nats_url: expected a NATS URL",
            id="bad-port",
        ),
        pytest.param(
            'node_name = "node 1"',
            'coordination.node_name: expected a node name such as "caxton-node-1"',
            id="space",
        ),
        pytest.param(
            'node_name = "-node"', "coordination.node_name: expected a node name", id="dash-first"
        ),
        pytest.param(
            f'node_name = "{"n" * 65}"', "coordination.node_name: expected a node name", id="long"
        ),
        pytest.param('nats_server = ""', "coordination.nats_server: expected", id="empty-path"),
        pytest.param(
            "cluster_secret = 42", "coordination.cluster_secret: expected a string", id="secret"
        ),
    ],
)
def test_bad_values_name_the_key(write_config: WriteConfig, line: str, error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write_config(f"[coordination]\n{line}\n"), environ={})
    assert error in str(raised.value)


@pytest.mark.parametrize(
    "url", ["nats://nats.internal:4222", "tls://user:pw@10.0.0.1:4222", "wss://nats.example"]
)
def test_nats_urls_are_accepted(write_config: WriteConfig, url: str) -> None:
    config = load_config(write_config(f'[coordination]\nnats_url = "{url}"\n'), environ={})
    assert config.coordination.nats_url == url


@pytest.mark.parametrize("key", ["nats_server", "cluster_secret"])
def test_keys_of_the_own_server_conflict_with_nats_url(write_config: WriteConfig, key: str) -> None:
    path = write_config(f'[coordination]\nnats_url = "nats://nats:4222"\n{key} = "x"\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert f"coordination.{key}: not used when nats_url is set" in str(raised.value)


def test_the_cluster_secret_is_masked(write_config: WriteConfig) -> None:
    path = write_config('[coordination]\ncluster_secret = "${CLUSTER_SECRET}"\n')
    config = load_config(path, environ={"CLUSTER_SECRET": CLUSTER_SECRET})
    assert CLUSTER_SECRET not in json.dumps(config_to_dict(config))
    assert CLUSTER_SECRET not in dump_config(config)
    assert CLUSTER_SECRET not in repr(config)
    assert config_to_dict(config)["coordination"]["cluster_secret"] == "********"
    shown = config_to_dict(config, mask_secrets=False)["coordination"]["cluster_secret"]
    assert shown == CLUSTER_SECRET


def test_caxton_nats_server_overrides_the_file(write_config: WriteConfig, tmp_path: Path) -> None:
    path = write_config('[coordination]\nnats_server = "/usr/bin/nats-server"\n')
    binary = tmp_path / "mine" / "nats-server"
    config = load_config(path, environ={"CAXTON_NATS_SERVER": str(binary)})
    assert config.coordination.nats_server == binary
    config = load_config(path, environ={"CAXTON_NATS_SERVER": ""})  # empty: unset
    assert config.coordination.nats_server == Path("/usr/bin/nats-server")


def test_a_password_in_nats_url_is_masked(write_config: WriteConfig) -> None:
    path = write_config('[coordination]\nnats_url = "nats://caxton:${NATS_PASSWORD}@nats:4222"\n')
    config = load_config(path, environ={"NATS_PASSWORD": CLUSTER_SECRET})
    assert config.coordination.nats_url == f"nats://caxton:{CLUSTER_SECRET}@nats:4222"
    assert config_to_dict(config)["coordination"]["nats_url"] == "nats://caxton:********@nats:4222"
    assert CLUSTER_SECRET not in dump_config(config)
    assert CLUSTER_SECRET not in repr(config)
    shown = config_to_dict(config, mask_secrets=False)["coordination"]["nats_url"]
    assert shown == config.coordination.nats_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://nats:4222", "nats://nats:4222"),
        ("nats://user@nats:4222", "nats://user@nats:4222"),
        ("tls://user:p%40ss@nats:4222", "tls://user:********@nats:4222"),
        ("nats://:token@nats", "nats://:********@nats"),
    ],
)
def test_mask_url_password(url: str, shown: str) -> None:
    assert mask_url_password(url) == shown
