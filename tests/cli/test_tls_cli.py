"""The CLI against a real node serving TLS with client certificates required.

One node: its certificate signed by a small test CA, ``tls_client_auth = "required"`` with the
same CA. The CLI needs ``--ca-cert`` to trust it and ``--client-cert``/``--client-key`` to be let
in, and says which it is missing; ``http://`` against the TLS port says to use ``https://``. The
admin and metrics listeners stay plain HTTP on loopback, as docs/operations.md says.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import tarfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from caxton.cli import cli
from tests.nodeproc import NodeProcess, write_config
from tests.support import wait_until
from tests.tls import Pki, health_over_tls, make_pki

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class TlsNode:
    node: NodeProcess
    pki: Pki
    api: str  # https://127.0.0.1:port


def _wait_ready(node: NodeProcess, timeout: float = 20.0) -> None:
    """Readiness from the admin listener (plain HTTP), since the API wants a client cert."""

    def ready() -> bool:
        assert node.proc is not None
        if node.proc.poll() is not None:
            _, err = node.proc.communicate()
            raise AssertionError(f"node exited: {err.decode(errors='replace')}")
        status, body = node.get("admin", "/status")
        return status == 200 and bool(json.loads(body)["ready"])

    wait_until(ready, timeout, retry_on=(OSError,), what="the TLS node became ready")


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsNode]:
    directory = tmp_path_factory.mktemp("tls-cli")
    pki = make_pki(directory / "pki")
    config = write_config(
        directory,
        networking=(
            "tls_enabled = true\n"
            f'tls_cert_path = "{pki.server_cert}"\n'
            f'tls_key_path = "{pki.server_key}"\n'
            f'tls_ca_path = "{pki.ca}"\n'
            'tls_client_auth = "required"\n'
        ),
    )
    node = NodeProcess(config).start(wait=False)
    with node:
        _wait_ready(node)
        yield TlsNode(node=node, pki=pki, api=node.url("api", ""))


def agent_list(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["agent", "list", *args], env=env or {})


def test_agent_list_with_ca_and_client_certificate(tls_node: TlsNode) -> None:
    pki = tls_node.pki
    result = agent_list(
        "--server",
        tls_node.api,
        "--ca-cert",
        str(pki.ca),
        "--client-cert",
        str(pki.client_cert),
        "--client-key",
        str(pki.client_key),
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["total"] >= 0


def test_the_tls_options_come_from_the_environment(tls_node: TlsNode) -> None:
    pki = tls_node.pki
    env = {
        "CAXTON_SERVER": tls_node.api,
        "CAXTON_CA_CERT": str(pki.ca),
        "CAXTON_CLIENT_CERT": str(pki.client_cert),
        "CAXTON_CLIENT_KEY": str(pki.client_key),
    }
    result = CliRunner().invoke(cli, ["dead-letters", "list", "-o", "json"], env=env)
    assert result.exit_code == 0, result.output
    assert "dead_letters" in json.loads(result.output)


def test_an_untrusted_certificate_says_to_pass_the_ca(tls_node: TlsNode) -> None:
    result = agent_list("--server", tls_node.api)
    assert result.exit_code == 1
    assert "not trusted" in result.output
    assert "--ca-cert FILE" in result.output
    assert "CAXTON_CA_CERT" in result.output
    assert "Traceback" not in result.output


def test_a_missing_client_certificate_says_what_to_pass(tls_node: TlsNode) -> None:
    result = agent_list("--server", tls_node.api, "--ca-cert", str(tls_node.pki.ca))
    assert result.exit_code == 1
    assert "--client-cert FILE --client-key FILE" in result.output


def test_plain_http_against_the_tls_port_says_use_https(tls_node: TlsNode) -> None:
    plain = tls_node.api.replace("https://", "http://")
    result = agent_list("--server", plain)
    assert result.exit_code == 1
    assert f"this port speaks TLS: use {tls_node.api}" in result.output
    assert "Remote end closed" not in result.output


def test_half_a_client_certificate_is_a_usage_error(tls_node: TlsNode) -> None:
    pki = tls_node.pki
    args = ["--server", tls_node.api, "--ca-cert", str(pki.ca)]
    result = agent_list(*args, "--client-cert", str(pki.client_cert))
    assert result.exit_code == 2
    assert "--client-cert and --client-key go together" in result.output


def test_required_client_auth_refuses_at_the_handshake(tls_node: TlsNode) -> None:
    """No certificate, or one from another CA: no HTTP answer at all. The right one: 200."""
    port = int(tls_node.api.rsplit(":", 1)[1])
    trusting = ssl.create_default_context(cafile=str(tls_node.pki.ca))
    assert health_over_tls(port, trusting) == b""

    other = make_pki(tls_node.node.config_path.parent / "other-pki", ca_name="other-ca")
    stranger = ssl.create_default_context(cafile=str(tls_node.pki.ca))
    stranger.load_cert_chain(other.client_cert, other.client_key)
    assert health_over_tls(port, stranger) == b""
    result = agent_list(
        "--server",
        tls_node.api,
        "--ca-cert",
        str(tls_node.pki.ca),
        "--client-cert",
        str(other.client_cert),
        "--client-key",
        str(other.client_key),
    )
    assert result.exit_code == 1
    assert "refused the client certificate" in result.output

    good = ssl.create_default_context(cafile=str(tls_node.pki.ca))
    good.load_cert_chain(tls_node.pki.client_cert, tls_node.pki.client_key)
    assert health_over_tls(port, good).startswith(b"HTTP/1.1 200")
    with urllib.request.urlopen(tls_node.api + "/health", context=good, timeout=5) as resp:
        assert json.loads(resp.read()) == {"status": "ok"}


def test_admin_and_metrics_stay_plain_http_on_loopback(tls_node: TlsNode) -> None:
    """docs/operations.md: client certificates guard the API listener only."""
    status, body = tls_node.node.get("admin", "/health")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    status, body = tls_node.node.get("metrics", "/metrics")
    assert status == 200
    assert b"caxton_" in body


def test_a_certificate_for_another_name_says_so(tls_node: TlsNode) -> None:
    """The test CA signed the node's certificate for 127.0.0.1 and localhost only."""
    from caxton.cli._tls import explain_tls_failure

    context = ssl.create_default_context(cafile=str(tls_node.pki.ca))
    port = int(tls_node.api.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError) as info,
    ):
        context.wrap_socket(raw, server_hostname="node.example")
    why = explain_tls_failure("https://node.example", info.value)
    assert why is not None
    assert "does not name this address" in why


def test_https_against_a_plain_port_says_use_http(tmp_path_factory: pytest.TempPathFactory) -> None:
    directory = tmp_path_factory.mktemp("plain")
    with NodeProcess(write_config(directory)).start() as node:
        plain = node.url("api", "")
        result = agent_list("--server", plain.replace("http://", "https://"))
    assert result.exit_code == 1
    assert f"this port does not speak TLS: use {plain}" in result.output


def test_debug_bundle_reaches_a_tls_node_with_the_tls_options(
    tls_node: TlsNode, tmp_path: Path
) -> None:
    # No --server: the bundle reads https:// and the API port from the node's configuration.
    pki, config = tls_node.pki, tls_node.node.config_path
    target = tmp_path / "tls.tar.gz"
    args = ["debug", "bundle", str(target), "--config", str(config), "--ca-cert", str(pki.ca)]
    certs = ["--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key)]
    result = CliRunner().invoke(cli, [*args, *certs], env={})
    assert result.exit_code == 0, result.output
    assert re.search(r"agents +ok +GET https://127\.0\.0\.1:\d+/api/v1/agents", result.output)

    # Without a client certificate the node refuses: the bundle is written all the same, and
    # says what to pass.
    result = CliRunner().invoke(cli, args, env={})
    assert result.exit_code == 0, result.output
    with tarfile.open(target) as tar:
        (name,) = [n for n in tar.getnames() if n.endswith("/manifest.json")]
        member = tar.extractfile(name)
        assert member is not None
        manifest = json.loads(member.read())
    agents = {part["name"]: part for part in manifest["parts"]}["agents"]
    assert agents["status"] == "failed"
    assert "--client-cert FILE --client-key FILE" in agents["detail"]
