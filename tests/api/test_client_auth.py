"""``[networking] tls_client_auth`` on a real TLS listener: who gets an HTTP answer.

A table of mode x client: no certificate, one signed by ``tls_ca_path``, one signed by another
CA. A refused client gets no HTTP answer at all (the handshake is aborted)."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from pathlib import Path

import pytest

from caxton.config import Address, Config, CoordinationConfig, NetworkingConfig
from caxton.config.schema import ClientAuth
from caxton.server import Server
from tests.nodeproc import free_port
from tests.tls import Pki, health_over_tls, make_pki


def _answer(port: int, pki: Pki, client: Pki | None) -> bytes:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if client is not None:
        context.load_cert_chain(client.client_cert, client.client_key)
    return health_over_tls(port, context)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param("none", {"no cert": True, "our CA": True, "other CA": True}, id="none"),
        pytest.param(
            "optional", {"no cert": True, "our CA": True, "other CA": False}, id="optional"
        ),
        pytest.param(
            "required", {"no cert": False, "our CA": True, "other CA": False}, id="required"
        ),
    ],
)
async def test_client_auth_modes(
    tmp_path: Path, mode: ClientAuth, expected: dict[str, bool]
) -> None:
    pki = make_pki(tmp_path / "pki")
    other = make_pki(tmp_path / "other", ca_name="another-ca")
    port = free_port()
    config = Config(
        networking=dataclasses.replace(
            NetworkingConfig(),
            bind_address=Address("127.0.0.1", port),
            metrics_address=Address("127.0.0.1", free_port()),
            admin_address=Address("127.0.0.1", free_port()),
            tls_enabled=True,
            tls_cert_path=pki.server_cert,
            tls_key_path=pki.server_key,
            tls_ca_path=pki.ca,
            tls_client_auth=mode,
        ),
        coordination=CoordinationConfig(local_state_path=tmp_path / "local.db"),
    )
    server = Server(config)
    await server.start()
    try:
        clients = {"no cert": None, "our CA": pki, "other CA": other}
        got = {
            name: (await asyncio.to_thread(_answer, port, pki, client)).startswith(b"HTTP/1.1 200")
            for name, client in clients.items()
        }
        assert got == expected
    finally:
        await server.aclose()
