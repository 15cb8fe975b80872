"""The nats-server configuration written from `[coordination]`: the mapping of DESIGN.md 6."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from caxton.cluster.natsconf import (
    NatsEndpoint,
    NatsSettings,
    RouteTls,
    render,
    render_text,
    route_url,
)
from caxton.config.schema import Address, CoordinationConfig, NetworkingConfig, Secret

PORTS = Path("/data/nats")


def _render(**keys: Any) -> dict[str, Any]:
    settings = NatsSettings.from_config(
        CoordinationConfig(**keys), server_name="node-1", token="tok", ports_dir=PORTS
    )
    return render(settings)


def test_the_defaults() -> None:
    conf = _render()
    assert conf == {
        "server_name": "node-1",
        "host": "127.0.0.1",
        "port": -1,  # chosen free by nats-server
        "http": "127.0.0.1:-1",
        "ports_file_dir": "/data/nats",
        "logtime": False,
        "authorization": {"token": "tok"},
        "cluster": {
            "name": "caxton",
            "listen": "127.0.0.1:7946",
            "ping_interval": "1000ms",
            "ping_max": 3,
        },
    }


@pytest.mark.parametrize(
    ("keys", "cluster"),
    [
        pytest.param(
            {"seeds": ("caxton-node-1:7946", "caxton-node-2:7946", "10.0.1.3:7946")},
            {
                "routes": [
                    "nats-route://caxton-node-1:7946",
                    "nats-route://caxton-node-2:7946",
                    "nats-route://10.0.1.3:7946",
                ]
            },
            id="seeds-with-dns-names",
        ),
        pytest.param({"seeds": ("[::1]:7946",)}, {"routes": ["nats-route://[::1]:7946"]}, id="v6"),
        pytest.param({"advertise_addr": "auto"}, {}, id="advertise-auto-is-unset"),
        pytest.param(
            {"advertise_addr": Address("10.0.1.5", 7946)},
            {"advertise": "10.0.1.5:7946"},
            id="advertise-address",
        ),
        pytest.param(
            {"bind_addr": Address("0.0.0.0", 7000)}, {"listen": "0.0.0.0:7000"}, id="bind-addr"
        ),
        pytest.param({"probe_interval": 0.2}, {"ping_interval": "200ms"}, id="probe-200ms"),
        pytest.param({"probe_interval": 2.5}, {"ping_interval": "2500ms"}, id="probe-2.5s"),
        pytest.param({"probe_interval": 0.0001}, {"ping_interval": "1ms"}, id="probe-at-least-1ms"),
        pytest.param(
            {"seeds": ("caxton-node-1:7946",), "cluster_secret": Secret("p@ss:/word")},
            {
                "routes": ["nats-route://caxton-route:p%40ss%3A%2Fword@caxton-node-1:7946"],
                "authorization": {"user": "caxton-route", "password": "p@ss:/word"},
            },
            id="cluster-secret",
        ),
    ],
)
def test_coordination_keys_map_to_the_cluster_block(
    keys: dict[str, Any], cluster: dict[str, Any]
) -> None:
    expected = {"name": "caxton", "listen": "127.0.0.1:7946", "ping_interval": "1000ms"}
    expected |= {"ping_max": 3} | cluster
    assert _render(**keys)["cluster"] == expected


def test_fixed_ports_are_written_as_given() -> None:
    settings = NatsSettings.from_config(
        CoordinationConfig(),
        server_name="n",
        token="t",
        ports_dir=PORTS,
        client_port=4222,
        monitor_port=8222,
    )
    conf = render(settings)
    assert (conf["port"], conf["http"]) == (4222, "127.0.0.1:8222")


def test_the_text_is_json_and_the_secrets_do_not_print() -> None:
    settings = NatsSettings.from_config(
        CoordinationConfig(cluster_secret=Secret("route-secret")),
        server_name="n",
        token="client-token",
        ports_dir=PORTS,
    )
    assert json.loads(render_text(settings)) == render(settings)
    assert "client-token" not in repr(settings)
    assert "route-secret" not in repr(settings)


def test_route_url_without_secret() -> None:
    assert route_url("caxton-node-1:7946", None) == "nats-route://caxton-node-1:7946"


def test_an_endpoint_prints_no_secret() -> None:
    assert "tok" not in repr(NatsEndpoint("nats://127.0.0.1:4222", "tok"))
    shown = repr(NatsEndpoint("nats://caxton:hunter2@nats:4222"))
    assert shown == "NatsEndpoint(client_url='nats://caxton:********@nats:4222')"
    assert NatsEndpoint("nats://127.0.0.1:4222", "tok").connect_options() == {
        "servers": ["nats://127.0.0.1:4222"],
        "token": "tok",
    }


def test_route_tls_from_the_node_certificates() -> None:
    networking = NetworkingConfig(
        tls_enabled=True,
        tls_cert_path=Path("/etc/caxton/node.pem"),
        tls_key_path=Path("/etc/caxton/node.key"),
        tls_ca_path=Path("/etc/caxton/ca.pem"),
    )
    tls = RouteTls.from_networking(networking)
    settings = NatsSettings.from_config(
        CoordinationConfig(), server_name="node-1", token="tok", ports_dir=PORTS, tls=tls
    )
    assert render(settings)["cluster"]["tls"] == {
        "cert_file": "/etc/caxton/node.pem",
        "key_file": "/etc/caxton/node.key",
        "ca_file": "/etc/caxton/ca.pem",
        "verify": True,  # mutual: each side checks the other's certificate
        "timeout": 2.0,
    }
    without_ca = RouteTls.from_networking(replace(networking, tls_ca_path=None))
    assert without_ca is not None
    assert "ca_file" not in without_ca.render()  # the system's trust store
    assert RouteTls.from_networking(replace(networking, tls_enabled=False)) is None
    assert "tls" not in _render()["cluster"]
