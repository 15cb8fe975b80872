"""`RouteDiagnosis`: nats-server's words for a refused route, said once in Caxton's terms.

The lines are nats-server 2.15's own, as its log gives them (without pid and level)."""

from __future__ import annotations

import logging

import pytest

from caxton.clock import ManualClock
from caxton.cluster.routelog import INTERVAL, RouteDiagnosis, explain

SHA = "(CN=caxton-node SHA-256: 5ef8da910013c6d593d3e497b26e44d94224b9d10c74c73f70a37a00c2b4c0b9)"


@pytest.mark.parametrize(
    ("line", "kind", "says"),
    [
        (
            "127.0.0.1:17802 - rid:10 - Route Error 'Authorization Violation'",
            "secret",
            "cluster: route to 127.0.0.1:17802 refused: wrong cluster_secret on one side",
        ),
        (
            '127.0.0.1:53736 - rid:9 - authentication error - User "caxton-route"',
            "secret",
            "cluster: route from 127.0.0.1:53736 refused: wrong cluster_secret on one side",
        ),
        (
            "127.0.0.1:17802 - rid:8 - TLS route handshake error: tls: failed to verify "
            f"certificate: x509: certificate signed by unknown authority {SHA}",
            "tls-ca",
            "not signed by the CA this node trusts ([networking] tls_ca_path",
        ),
        (
            "127.0.0.1:54694 - rid:6 - TLS route handshake error: remote error: tls: bad "
            "certificate",
            "tls-refused",
            "the peer refused this node's certificate",
        ),
        (
            "127.0.0.1:38044 - rid:5 - TLS route handshake error: tls: failed to verify "
            f"certificate: x509: certificate specifies an incompatible key usage {SHA}",
            "tls-usage",
            "extendedKeyUsage serverAuth and clientAuth",
        ),
        (
            "10.0.0.2:7946 - rid:3 - TLS route handshake error: tls: failed to verify "
            "certificate: x509: cannot validate certificate for 10.0.0.2 because it doesn't "
            "contain any IP SANs",
            "tls-name",
            "does not name the address it was dialled on",
        ),
        (
            "10.0.0.2:7946 - rid:3 - TLS route handshake error: tls: first record does not look "
            "like a TLS handshake",
            "tls-mismatch",
            "tls_enabled differs between the nodes",
        ),
        (
            "10.0.0.2:7946 - rid:3 - TLS route handshake error: something new",
            "tls",
            "cluster: route TLS handshake with 10.0.0.2:7946 failed: something new",
        ),
    ],
)
def test_refused_routes_are_explained(line: str, kind: str, says: str) -> None:
    found = explain(line)
    assert found is not None
    assert found[0] == kind
    assert says in found[2]
    assert found[2].startswith("cluster: ")


@pytest.mark.parametrize(
    "line",
    [
        "127.0.0.1:17802 - rid:8 - Route connection created",
        "Error trying to connect to route (attempt 1): dial tcp 127.0.0.1:17802: connect: "
        "connection refused",
        "127.0.0.1:17802 - rid:9 - Router connection closed: Duplicate Route - Remote: b",
    ],
)
def test_other_lines_are_not_explained(line: str) -> None:
    assert explain(line) is None


def test_one_line_per_cause_and_peer_host_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    diagnosis = RouteDiagnosis("node-1", clock=clock)
    refusals = [
        f'127.0.0.1:{port} - rid:9 - authentication error - User "caxton-route"'
        for port in range(50000, 50010)  # inbound routes come from a new port each time
    ]
    with caplog.at_level(logging.ERROR, logger="caxton.cluster"):
        said = [diagnosis.observe(line) for line in refusals]
        assert said[0] is not None
        assert said[1:] == [None] * 9
        assert diagnosis.observe("10.0.0.9:7946 - rid:1 - Route Error 'Authorization Violation'")
        clock.advance(INTERVAL + 1)
        assert diagnosis.observe(refusals[0]) is not None
    assert diagnosis.seen == {"secret": 12}
    records = [r for r in caplog.records if r.name == "caxton.cluster"]
    assert len(records) == 3
    assert records[0].nats_server == "node-1"  # type: ignore[attr-defined]
