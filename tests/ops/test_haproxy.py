"""The deployment guide's HAProxy configuration in front of two real Caxton node processes.

The configuration below is the guide's "Load Balancer Configuration (HAProxy)" section copied
verbatim; `_adapted_config` changes only what a test on one machine must, each change asserted
to match the guide's text and explained where it is made. haproxy runs in the foreground
(``-db``) on free 127.0.0.1 ports and is always stopped; so are the nodes.
"""

from __future__ import annotations

import http.client
import itertools
import json
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.nodeproc import NodeProcess, free_port, write_config
from tests.support import EXAMPLES, message
from tests.tls import self_signed

pytestmark = pytest.mark.slow

#: /etc/haproxy/haproxy.cfg from the deployment guide, verbatim.
GUIDE_HAPROXY_CFG = """\
global
    daemon
    log stdout local0 info

defaults
    log global
    option httplog
    option dontlognull
    timeout connect 5000ms
    timeout client 50000ms
    timeout server 50000ms

frontend caxton_frontend
    bind *:80
    bind *:443 ssl crt /etc/ssl/certs/caxton.pem
    redirect scheme https if !{ ssl_fc }
    default_backend caxton_backend

backend caxton_backend
    balance roundrobin
    option httpchk GET /health
    server caxton1 10.0.1.10:8080 check
    server caxton2 10.0.1.11:8080 check
    server caxton3 10.0.1.12:8080 check

frontend caxton_metrics
    bind *:9090
    default_backend caxton_metrics_backend

backend caxton_metrics_backend
    balance roundrobin
    server caxton1 10.0.1.10:9090 check
    server caxton2 10.0.1.11:9090 check
    server caxton3 10.0.1.12:9090 check
"""

#: Added to every ``check``: the default (inter 2s, fall 3, rise 2) takes about 6 s to notice a
#: stopped node; a 200 ms interval that marks a server down after 2 failures and up after 1
#: success keeps the failover test to well under a second. Nothing else about the checks changes.
FAST_CHECKS = "inter 200ms fall 2 rise 1"


def _haproxy() -> str:
    path = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if path is None:
        pytest.fail("haproxy is not installed: install the Debian package `haproxy`")
    return path


def _replace(text: str, old: str, new: str) -> str:
    """``text`` with the one occurrence of ``old`` (a line of the guide's config) replaced."""
    assert text.count(old) == 1, f"the guide's haproxy.cfg no longer has exactly one {old!r}"
    return text.replace(old, new)


def _adapted_config(
    *, http_port: int, https_port: int, metrics_port: int, pem: Path, nodes: list[NodeProcess]
) -> str:
    cfg = GUIDE_HAPROXY_CFG
    # `daemon` stays: `haproxy -db` keeps it in the foreground regardless, and `log stdout`
    # then reaches our pipe (the test reads the health-check transitions from it).
    #
    # The guide's `defaults` has no `mode`, so haproxy runs every proxy in its default TCP mode:
    # `haproxy -c` then warns that `option httplog` falls back to tcplog and that the `redirect`
    # rule is ignored (plain HTTP would be served, never redirected to HTTPS). The guide's
    # directives only make sense in HTTP mode, so add the one line they need.
    cfg = _replace(cfg, "defaults\n    log global\n", "defaults\n    mode http\n    log global\n")
    # Loopback and free ports instead of *:80, *:443 and *:9090; a self-signed PEM made here
    # instead of /etc/ssl/certs/caxton.pem. The https redirect is kept as the guide has it.
    cfg = _replace(cfg, "bind *:80\n", f"bind 127.0.0.1:{http_port}\n")
    cfg = _replace(
        cfg,
        "bind *:443 ssl crt /etc/ssl/certs/caxton.pem\n",
        f"bind 127.0.0.1:{https_port} ssl crt {pem}\n",
    )
    cfg = _replace(cfg, "bind *:9090\n", f"bind 127.0.0.1:{metrics_port}\n")
    # The guide's three servers become our two nodes' loopback API and metrics ports.
    for listener, port in (("api", 8080), ("metrics", 9090)):
        guide_lines = "".join(
            f"    server caxton{i} 10.0.1.{9 + i}:{port} check\n" for i in (1, 2, 3)
        )
        ours = "".join(
            f"    server caxton{i} {node.url(listener, '').split('//')[1]} check {FAST_CHECKS}\n"
            for i, node in enumerate(nodes, start=1)
        )
        cfg = _replace(cfg, guide_lines, ours)
    return cfg


def _self_signed_pem(directory: Path) -> tuple[Path, Path]:
    """(haproxy's ``crt`` file: certificate then key, the certificate alone for clients)."""
    cert_pem, key_pem = self_signed("caxton-haproxy-test")
    pem = directory / "caxton.pem"
    pem.write_bytes(cert_pem + key_pem)
    ca = directory / "ca.crt"
    ca.write_bytes(cert_pem)
    return pem, ca


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def _request(
    port: int,
    method: str,
    path: str,
    *,
    tls: ssl.SSLContext | None = None,
    body: bytes | None = None,
    content_type: str | None = None,
) -> Response:
    """One request on a fresh connection (so haproxy balances each one); no redirects followed."""
    conn: http.client.HTTPConnection
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=tls)
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@dataclass
class HAProxy:
    """``haproxy -f CFG -db``, its output (the guide's ``log stdout``) collected by a thread."""

    cfg: Path
    proc: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> HAProxy:
        self.proc = subprocess.Popen(
            [_haproxy(), "-f", str(self.cfg), "-db"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> float:
        """Wait until a line contains ``text``; return when (time.monotonic()) it was seen."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                assert left > 0, f"haproxy never logged {text!r}; output:\n{self.output()}"
                self._changed.wait(left)
        return time.monotonic()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Cluster:
    nodes: list[NodeProcess]
    haproxy: HAProxy
    http_port: int
    https_port: int
    metrics_port: int
    tls: ssl.SSLContext

    def https(self, method: str, path: str, body: bytes | None = None) -> Response:
        ctype = "application/json" if body is not None else None
        return _request(self.https_port, method, path, tls=self.tls, body=body, content_type=ctype)

    def ask_echo(self, conversation_id: str) -> Response:
        """A request to ``echo`` through haproxy, waiting for the reply."""
        body = message("echo", {"n": conversation_id}, conversation_id=conversation_id)
        return self.https("POST", "/api/v1/messages?wait=5s", body)

    def served_by(self, conversation_id: str) -> list[int]:
        """Which nodes (0, 1) hold the conversation, asked on each node directly."""
        holders = []
        for index, node in enumerate(self.nodes):
            if node.proc is not None and node.proc.poll() is None:
                status, _ = node.get("api", f"/api/v1/conversations/{conversation_id}")
                assert status in (200, 404), status
                if status == 200:
                    holders.append(index)
        return holders


def _write_config(
    tmp_path: Path, nodes: list[NodeProcess], pem: Path
) -> tuple[Path, int, int, int]:
    ports = free_port(), free_port(), free_port()
    text = _adapted_config(
        http_port=ports[0], https_port=ports[1], metrics_port=ports[2], pem=pem, nodes=nodes
    )
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    return cfg, *ports


def _check_config(cfg: Path) -> str:
    checked = subprocess.run(
        [_haproxy(), "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30
    )
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, f"haproxy -c failed:\n{output}\n--- {cfg}:\n{cfg.read_text()}"
    return output


@contextmanager
def _cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Two nodes, each with the echo example deployed, behind haproxy with the guide's config."""
    with ExitStack() as stack:
        nodes = []
        for name in ("n1", "n2"):
            (tmp_path / name).mkdir()
            node = stack.enter_context(NodeProcess(write_config(tmp_path / name)))
            node.start(wait=False)
            nodes.append(node)
        for node in nodes:
            node.wait_ready()
        wasm = (EXAMPLES / "echo.wasm").read_bytes()
        for node in nodes:
            deployed = _request(
                int(node.url("api", "").rsplit(":", 1)[1]),
                "POST",
                "/api/v1/agents?name=echo",
                body=wasm,
                content_type="application/wasm",
            )
            assert deployed.status == 201, deployed.body

        pem, ca = _self_signed_pem(tmp_path)
        cfg, http_port, https_port, metrics_port = _write_config(tmp_path, nodes, pem)
        _check_config(cfg)
        haproxy = HAProxy(cfg).start()
        stack.callback(haproxy.stop)
        cluster = Cluster(
            nodes,
            haproxy,
            http_port,
            https_port,
            metrics_port,
            ssl.create_default_context(cafile=ca),
        )
        deadline = time.monotonic() + 10
        while True:
            assert haproxy.proc is not None
            assert haproxy.proc.poll() is None, f"haproxy exited:\n{haproxy.output()}"
            try:
                if cluster.https("GET", "/health").status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"haproxy never answered:\n{haproxy.output()}"
            time.sleep(0.05)
        yield cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with _cluster(tmp_path_factory.mktemp("haproxy")) as running:
        yield running


def test_guide_config_is_valid_and_warning_free(tmp_path: Path) -> None:
    nodes = []
    for name in ("n1", "n2"):  # configs only: `haproxy -c` needs addresses, not live servers
        (tmp_path / name).mkdir()
        nodes.append(NodeProcess(write_config(tmp_path / name)))
    pem, _ = _self_signed_pem(tmp_path)
    cfg = _write_config(tmp_path, nodes, pem)[0]
    output = _check_config(cfg)
    assert "Configuration file is valid" in output
    assert "[WARNING]" not in output, output
    assert "[ALERT]" not in output, output


def test_health_redirect_and_metrics_through_haproxy(cluster: Cluster) -> None:
    health = cluster.https("GET", "/health")
    assert (health.status, health.json()) == (200, {"status": "ok"})
    assert cluster.https("GET", "/ready").status == 200

    # Plain HTTP is redirected to HTTPS, as the guide's `redirect scheme https` intends.
    plain = _request(cluster.http_port, "GET", "/health")
    assert plain.status == 302, plain
    assert plain.headers["location"].startswith("https://127.0.0.1"), plain.headers

    for _ in range(2):  # roundrobin: one scrape from each node
        scraped = _request(cluster.metrics_port, "GET", "/metrics")
        assert scraped.status == 200, scraped
        assert scraped.headers["content-type"].startswith("text/plain"), scraped.headers
        text = scraped.body.decode()
        names = {family.name for family in text_string_to_metric_families(text)}
        assert "caxton_build_info" in names
        assert "caxton_http_requests" in names


def test_requests_are_balanced_round_robin(cluster: Cluster) -> None:
    served: list[int] = []
    for i in range(6):
        conversation = f"rr-{i}"
        reply = cluster.ask_echo(conversation)
        assert reply.status == 200, (reply, cluster.haproxy.output())
        body = reply.json()
        assert isinstance(body, dict)
        assert (body["sender"], body["performative"]) == ("echo", "inform")
        assert body["content"] == {"n": conversation}
        assert reply.headers["x-caxton-conversation-id"] == conversation
        holders = cluster.served_by(conversation)
        assert len(holders) == 1, f"{conversation} is on nodes {holders}"
        served.append(holders[0])
    # roundrobin with equal weights alternates strictly between the two healthy servers.
    assert sorted(served) == [0, 0, 0, 1, 1, 1], served
    assert all(a != b for a, b in itertools.pairwise(served)), served


def test_a_stopped_node_is_taken_out_by_the_health_check(tmp_path: Path) -> None:
    with _cluster(tmp_path) as cluster:
        first = [cluster.ask_echo(f"before-{i}") for i in range(2)]
        assert [r.status for r in first] == [200, 200]
        assert {cluster.served_by(f"before-{i}")[0] for i in range(2)} == {0, 1}

        stopping = time.monotonic()
        code, stderr = cluster.nodes[0].stop()  # SIGTERM
        assert code == 0, stderr
        down_at = cluster.haproxy.wait_for("caxton_backend/caxton1 is DOWN", timeout=5)
        cluster.haproxy.wait_for("caxton_metrics_backend/caxton1 is DOWN", timeout=5)
        # fall 2 x inter 200ms: the node leaves the pool within about half a second.
        assert down_at - stopping < 3, cluster.haproxy.output()

        statuses = []
        for i in range(8):
            conversation = f"after-{i}"
            reply = cluster.ask_echo(conversation)
            statuses.append(reply.status)
            if reply.status == 200:
                assert cluster.served_by(conversation) == [1]
        assert statuses == [200] * 8, (statuses, cluster.haproxy.output())
        scrapes = [_request(cluster.metrics_port, "GET", "/metrics").status for _ in range(4)]
        assert scrapes == [200] * 4, cluster.haproxy.output()
        assert cluster.https("GET", "/health").status == 200
