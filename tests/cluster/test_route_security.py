"""Route security with real nats-server children: the cluster secret and TLS with the node
certificates. A node with the wrong secret or certificate never joins, and the log says why
in one line; nodes with certificates of the same CA mesh over TLS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from caxton.cluster.link import ClusterLink
from caxton.cluster.natsconf import RouteTls
from caxton.cluster.natsd import route_warning
from caxton.config import Config
from caxton.config.schema import Address, CoordinationConfig, NetworkingConfig, Secret
from caxton.node import Node
from tests.nodeproc import free_port
from tests.support import eventually
from tests.tls import Pki, make_pki

from .conftest import coordination

P = 0.2  # probe interval, seconds
#: How long two nodes that must not meet are watched (nats-server redials every second).
APART = 2.5


@pytest.fixture
async def links(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    """``await start(name, port, seed, secret=..., pki=..., ca=...)``: a started link."""
    async with AsyncExitStack() as stack:

        async def start(
            name: str,
            port: int,
            seed: int,
            *,
            secret: str | None = None,
            pki: Pki | None = None,
            ca: Path | None = None,
        ) -> ClusterLink:
            networking = None
            if pki is not None:
                networking = NetworkingConfig(
                    tls_enabled=True,
                    tls_cert_path=pki.server_cert,
                    tls_key_path=pki.server_key,
                    tls_ca_path=ca,
                )
            keys = coordination(
                port,
                (seed,),
                node_name=name,
                local_state_path=tmp_path / name / "local.db",
                probe_interval=P,
                cluster_secret=None if secret is None else Secret(secret),
            )
            link = ClusterLink(keys, networking=networking)
            await link.start()
            stack.push_async_callback(link.aclose)
            return link

        yield start


def peers(link: ClusterLink) -> set[str]:
    return {m.name for m in link.membership.members()} - {link.name}


async def meet(one: ClusterLink, two: ClusterLink) -> None:
    async def met() -> bool:
        return peers(one) == {two.name} and peers(two) == {one.name}

    await eventually(met, 10, what="the two nodes see each other")


async def stay_apart(one: ClusterLink, two: ClusterLink) -> None:
    await asyncio.sleep(APART)
    assert peers(one) == set()
    assert peers(two) == set()
    for link in (one, two):
        status = await link.status()
        assert status["routes"] == 0, status


def explanations(caplog: pytest.LogCaptureFixture, node: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "caxton.cluster" and getattr(r, "nats_server", None) == node
    ]


async def test_nodes_with_different_secrets_never_meet_and_say_why(
    links: Callable[..., object], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="caxton.cluster")
    a, b = free_port(), free_port()
    one: ClusterLink = await links("one", a, b, secret="the-secret")  # type: ignore[misc]
    two: ClusterLink = await links("two", b, a, secret="another-secret")  # type: ignore[misc]
    await stay_apart(one, two)
    for link in (one, two):
        said = explanations(caplog, link.name)
        assert len(said) == 1, said  # nats-server refused many times; one line says why
        assert "refused: wrong cluster_secret on one side" in said[0]
        assert link.server is not None
        assert link.server.routes.seen["secret"] > 1
    assert "the-secret" not in caplog.text
    assert "another-secret" not in caplog.text


async def test_nodes_with_the_same_secret_meet(links: Callable[..., object]) -> None:
    a, b = free_port(), free_port()
    one: ClusterLink = await links("one", a, b, secret="s3cret:/@")  # type: ignore[misc]
    two: ClusterLink = await links("two", b, a, secret="s3cret:/@")  # type: ignore[misc]
    await meet(one, two)


async def test_nodes_with_certificates_of_one_ca_mesh_over_tls(
    links: Callable[..., object], tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki", routes=True)
    a, b = free_port(), free_port()
    one: ClusterLink = await links("one", a, b, pki=pki, ca=pki.ca)  # type: ignore[misc]
    two: ClusterLink = await links("two", b, a, pki=pki, ca=pki.ca)  # type: ignore[misc]
    await meet(one, two)
    # The route port speaks TLS first, and only to a certificate of the CA: it greets such a
    # client with its INFO (asking for TLS), and says nothing to a plain one.
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(pki.server_cert, pki.server_key)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", a, ssl=context, server_hostname="127.0.0.1"
    )
    try:
        greeting = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    assert greeting.startswith(b"INFO ")
    assert json.loads(greeting[5:])["tls_required"] is True
    reader, writer = await asyncio.open_connection("127.0.0.1", a)
    try:
        with contextlib.suppress(TimeoutError):
            assert await asyncio.wait_for(reader.read(1), 0.5) == b""
    finally:
        writer.close()


async def test_a_certificate_of_another_ca_cannot_join_and_the_log_says_why(
    links: Callable[..., object], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="caxton.cluster")
    ours = make_pki(tmp_path / "ours", routes=True)
    theirs = make_pki(tmp_path / "theirs", ca_name="another-ca", routes=True)
    a, b = free_port(), free_port()
    one: ClusterLink = await links("one", a, b, pki=ours, ca=ours.ca)  # type: ignore[misc]
    two: ClusterLink = await links("two", b, a, pki=theirs, ca=theirs.ca)  # type: ignore[misc]
    await stay_apart(one, two)
    for link in (one, two):
        said = " | ".join(explanations(caplog, link.name))
        assert "is not signed by the CA this node trusts ([networking] tls_ca_path" in said


async def test_a_certificate_only_for_servers_is_explained(
    links: Callable[..., object], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="caxton.cluster")
    pki = make_pki(tmp_path / "pki")  # server certificate without clientAuth
    a, b = free_port(), free_port()
    one: ClusterLink = await links("one", a, b, pki=pki, ca=pki.ca)  # type: ignore[misc]
    two: ClusterLink = await links("two", b, a, pki=pki, ca=pki.ca)  # type: ignore[misc]
    await stay_apart(one, two)
    said = " | ".join(explanations(caplog, "one") + explanations(caplog, "two"))
    assert "extendedKeyUsage serverAuth and clientAuth" in said


async def test_tls_without_a_ca_warns_at_start(
    links: Callable[..., object], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki = make_pki(tmp_path / "pki", routes=True)
    await links("one", free_port(), free_port(), pki=pki)  # type: ignore[misc]
    assert "[networking] tls_ca_path is not set" in caplog.text


def test_weak_route_security_is_warned_about() -> None:
    tls = RouteTls(Path("/etc/caxton/node.pem"), Path("/etc/caxton/node.key"))
    everywhere = Address("0.0.0.0", 7946)
    open_routes = route_warning(CoordinationConfig(bind_addr=everywhere), None)
    assert open_routes is not None
    assert "the routes on 0.0.0.0:7946 take any node that reaches them" in open_routes
    secret = Secret("s")
    assert (
        route_warning(CoordinationConfig(bind_addr=everywhere, cluster_secret=secret), None) is None
    )
    assert route_warning(CoordinationConfig(), None) is None  # loopback: this machine only
    no_ca = route_warning(CoordinationConfig(bind_addr=everywhere), tls)
    assert no_ca is not None
    assert "[networking] tls_ca_path is not set" in no_ca
    with_ca = RouteTls(tls.cert, tls.key, Path("/etc/caxton/ca.pem"))
    assert route_warning(CoordinationConfig(bind_addr=everywhere), with_ca) is None


async def test_a_node_secures_its_routes_with_its_tls_config(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", routes=True)
    networking = NetworkingConfig(
        tls_enabled=True,
        tls_cert_path=pki.server_cert,
        tls_key_path=pki.server_key,
        tls_ca_path=pki.ca,
    )
    port = free_port()

    def node(name: str, listen: int | None) -> Node:
        keys = coordination(
            listen,
            (port,),
            node_name=name,
            local_state_path=tmp_path / name / "local.db",
            probe_interval=P,
        )
        return Node(Config(networking=networking, coordination=keys))

    one, two = node("one", port), node("two", None)
    try:
        await one.start()
        await two.start()
        assert one.cluster is not None
        assert two.cluster is not None
        assert one.cluster.server is not None
        assert one.cluster.server.tls == RouteTls(pki.server_cert, pki.server_key, pki.ca)
        await meet(one.cluster, two.cluster)
    finally:
        await two.aclose()
        await one.aclose()


async def test_a_node_without_the_secret_is_no_member_even_when_a_route_forms(
    links: Callable[..., object], caplog: pytest.LogCaptureFixture
) -> None:
    """nats-server checks credentials only where a route is accepted: the secured node dials
    the secretless one (its seed), which accepts. Every message is signed, so neither takes
    the other's heartbeats, and both say why."""
    caplog.set_level(logging.ERROR, logger="caxton.cluster")
    a, b = free_port(), free_port()
    one: ClusterLink = await links("one", a, b, secret="the-secret")  # type: ignore[misc]
    two: ClusterLink = await links("two", b, a)  # type: ignore[misc]

    async def routed() -> bool:
        return bool((await one.status())["routes"] > 0)

    await eventually(routed, 10, what="the secured node's route to its seed")
    await asyncio.sleep(APART)
    assert peers(one) == set()
    assert peers(two) == set()
    said = [r.getMessage() for r in caplog.records if r.name == "caxton.cluster"]
    assert any("came from a node without cluster_secret: dropped" in line for line in said)
    assert any("signed with a cluster_secret and this node has none" in line for line in said)
    assert "the-secret" not in caplog.text
