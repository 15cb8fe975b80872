"""The deployment guide's nginx configuration in front of real Caxton nodes.

The guide's "Load Balancing / Nginx Configuration" block (upstream ``caxton_backend`` with
``least_conn`` and ``max_fails=3 fail_timeout=30s``, the ``server`` with its proxy headers,
WebSocket lines and timeouts, and the ``/health`` location with ``access_log off``) and its
"Session Affinity" upstreams are embedded below as literally as possible. Only what a test
must change is changed:

* the upstream servers are the test nodes' loopback API ports;
* ``listen 80`` / ``listen 443 ssl http2`` become free ports on 127.0.0.1, and the certificate
  is a self-signed one made here;
* ``ssl_ciphers``: the guide's ``...-AES256-GCM-SHA512`` suites do not exist, and OpenSSL
  refuses the whole list, so nginx does not start at all (see
  `test_the_guides_cipher_list_stops_nginx`); the SHA384 suites, which do exist, are used;
* the guide's blocks need the ``events {}`` / ``http {}`` wrappers of a main nginx.conf, with
  the pid file, logs and temp directories under the test's directory and ``user`` set to the
  user running the tests (as root, nginx's default ``nobody`` workers could not spool a
  request body, such as an uploaded module, into the test's private temp directory).

nginx runs in the foreground (``-g 'daemon off;'``) as a child of the test, after
``nginx -t`` has accepted the configuration. CI needs the Debian package ``nginx-light``.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.nodeproc import NodeProcess, free_port, write_config
from tests.support import eventually, example, next_event, tool, wait_until
from tests.tls import self_signed

pytestmark = pytest.mark.slow

#: The guide's cipher list, verbatim: these SHA512 suites exist in no TLS version.
GUIDE_CIPHERS = "ECDHE-RSA-AES256-GCM-SHA512:DHE-RSA-AES256-GCM-SHA512"
#: The suites the guide means (AES256-GCM with SHA384), which OpenSSL knows.
CIPHERS = "ECDHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES256-GCM-SHA384"

# The guide's upstream blocks; @SERVERS@ becomes one line per node, as in the guide.
LEAST_CONN = """\
upstream caxton_backend {
    least_conn;
@SERVERS@
}
"""
LEAST_CONN_SERVER = "    server @ADDRESS@ max_fails=3 fail_timeout=30s;"

IP_HASH = """\
upstream caxton_backend {
    ip_hash;  # Route based on client IP
@SERVERS@
}
"""

CONSISTENT_HASH = """\
upstream caxton_backend {
    hash $request_uri consistent;
@SERVERS@
}
"""
AFFINITY_SERVER = "    server @ADDRESS@;"

# The guide's server block. Changed: the two `listen` addresses, the certificate paths and the
# cipher list (see the module docstring).
SERVER = """\
server {
    listen @LISTEN@;
    listen @LISTEN_TLS@ ssl http2;
    server_name caxton.example.com;

    ssl_certificate @CERT@;
    ssl_certificate_key @KEY@;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers @CIPHERS@;

    location / {
        proxy_pass http://caxton_backend;
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;

        # WebSocket support
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";

        # Timeouts
        proxy_connect_timeout 60s;
        proxy_send_timeout 60s;
        proxy_read_timeout 60s;
    }

    location /health {
        access_log off;
        proxy_pass http://caxton_backend/health;
    }
}
"""

# What the guide leaves to the distribution's /etc/nginx/nginx.conf, kept under the test's
# directory. The guide's upstream and server go into `http {}` as a sites-enabled file would.
MAIN = """\
user @USER@ @GROUP@;
worker_processes 1;
pid "@PREFIX@/nginx.pid";
error_log "@PREFIX@/error.log" info;

events {
    worker_connections 256;
}

http {
    access_log "@PREFIX@/access.log";
    client_body_temp_path "@PREFIX@/client_body";
    proxy_temp_path "@PREFIX@/proxy";
    fastcgi_temp_path "@PREFIX@/fastcgi";
    uwsgi_temp_path "@PREFIX@/uwsgi";
    scgi_temp_path "@PREFIX@/scgi";

@UPSTREAM@
@SERVER@
}
"""

TIMEOUT = aiohttp.ClientTimeout(total=10)
WASM = {"Content-Type": "application/wasm"}


def fill(template: str, **values: str) -> str:
    """``template`` with each ``@KEY@`` replaced (nginx's own ``$`` and braces left alone)."""
    for key, value in values.items():
        template = template.replace(f"@{key}@", value)
    assert "@" not in template, template
    return template


def upstream(template: str, server: str, nodes: list[NodeProcess]) -> str:
    lines = [fill(server, ADDRESS=api_address(node)) for node in nodes]
    return fill(template, SERVERS="\n".join(lines))


def api_address(node: NodeProcess) -> str:
    """The node's API ``127.0.0.1:port``."""
    return urlsplit(node.url("api", "/")).netloc


def nginx_binary() -> str:
    return tool("nginx", "nginx-light")


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def client_context(self, *, tls12: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.cert))
        if tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        return ctx


def certificate(directory: Path) -> Certificate:
    """An RSA certificate for 127.0.0.1 (the guide's suites are ECDHE-RSA / DHE-RSA)."""
    cert, key = self_signed("caxton.example.com", rsa_key=True)
    paths = Certificate(directory / "caxton.crt", directory / "caxton.key")
    paths.cert.write_bytes(cert)
    paths.key.write_bytes(key)
    return paths


@dataclass
class Nginx:
    """An nginx master process (and its worker) running the generated nginx.conf."""

    prefix: Path
    port: int
    tls_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"

    def error_log(self) -> str:
        return (self.prefix / "error.log").read_text(errors="replace")

    def access_log(self) -> str:
        path = self.prefix / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""


def write_nginx_conf(
    prefix: Path, upstream_block: str, cert: Certificate, *, ciphers: str = CIPHERS
) -> tuple[Path, int, int]:
    port, tls_port = free_port(), free_port()
    server = fill(
        SERVER,
        LISTEN=f"127.0.0.1:{port}",
        LISTEN_TLS=f"127.0.0.1:{tls_port}",
        CERT=f'"{cert.cert}"',
        KEY=f'"{cert.key}"',
        CIPHERS=ciphers,
    )
    text = fill(
        MAIN,
        USER=pwd.getpwuid(os.getuid()).pw_name,
        GROUP=grp.getgrgid(os.getgid()).gr_name,
        PREFIX=str(prefix),
        UPSTREAM=upstream_block,
        SERVER=server,
    )
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return conf, port, tls_port


def nginx_test(conf: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on ``conf``: its output is on stderr."""
    return subprocess.run(
        [nginx_binary(), "-t", "-p", str(conf.parent), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@contextlib.contextmanager
def run_nginx(prefix: Path, upstream_block: str, cert: Certificate) -> Iterator[Nginx]:
    """nginx in the foreground with the guide's config; always stopped on the way out."""
    prefix.mkdir(parents=True, exist_ok=True)
    conf, port, tls_port = write_nginx_conf(prefix, upstream_block, cert)
    checked = nginx_test(conf)
    assert checked.returncode == 0, (
        f"nginx -t refused the config:\n{checked.stderr}\n--- {conf} ---\n{conf.read_text()}"
    )
    stderr = prefix / "nginx.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [nginx_binary(), "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # its own process group: the worker is stopped with it
        )
    server = Nginx(prefix, port, tls_port)
    try:
        wait_listening(proc, port, server)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: nginx's fast shutdown, workers included
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # a worker the master left behind, if any


def wait_listening(proc: subprocess.Popen[bytes], port: int, server: Nginx) -> None:

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"nginx exited with {proc.returncode}:\n"
                + (server.prefix / "nginx.stderr").read_text(errors="replace")
                + server.error_log()
            )
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, 10, interval=0.02, what=lambda: "nginx listened:\n" + server.error_log())


@contextlib.contextmanager
def nodes(directory: Path, count: int) -> Iterator[list[NodeProcess]]:
    """``count`` real `caxton serve` processes on loopback, started side by side."""
    with contextlib.ExitStack() as stack:
        started: list[NodeProcess] = []
        for index in range(count):
            home = directory / f"node{index}"
            home.mkdir(parents=True)
            node = stack.enter_context(NodeProcess(write_config(home)))
            node.start(wait=False)
            started.append(node)
        for node in started:
            node.wait_ready()
        yield started


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with nodes(tmp_path_factory.mktemp("one"), 1) as (only,):
        yield only


@pytest.fixture(scope="module")
def proxy(
    tmp_path_factory: pytest.TempPathFactory, node: NodeProcess, cert: Certificate
) -> Iterator[Nginx]:
    """The guide's nginx (least_conn upstream) in front of one node."""
    block = upstream(LEAST_CONN, LEAST_CONN_SERVER, [node])
    with run_nginx(tmp_path_factory.mktemp("nginx"), block, cert) as server:
        yield server


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProcess]]:
    """Two independent nodes (no cluster: each has its own agents)."""
    with nodes(tmp_path_factory.mktemp("pair"), 2) as both:
        yield both


# -- helpers ------------------------------------------------------------------------------------


def session(base_url: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=base_url, timeout=TIMEOUT)


async def json_of(resp: aiohttp.ClientResponse, status: int) -> Any:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json", resp.headers
    return await resp.json()


async def error_code(resp: aiohttp.ClientResponse, status: int) -> str:
    """The code of Caxton's JSON error envelope (not an nginx HTML page)."""
    body = await json_of(resp, status)
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    code: str = body["error"]["code"]
    return code


async def deploy(client: aiohttp.ClientSession, name: str) -> dict[str, Any]:
    """Upload the example echo agent as raw application/wasm (30 KB: nginx spools it)."""
    async with client.post(
        "/api/v1/agents", params={"name": name}, data=example("echo"), headers=WASM
    ) as resp:
        agent: dict[str, Any] = await json_of(resp, 201)
        assert resp.headers["Location"] == f"/api/v1/agents/{name}"
    assert agent["name"] == name
    return agent


async def ask(client: aiohttp.ClientSession, receiver: str, content: Any) -> dict[str, Any]:
    """A request with ``?wait=5s``: the echo's reply."""
    message = {"receiver": receiver, "performative": "request", "content": content}
    async with client.post("/api/v1/messages", json=message, params={"wait": "5s"}) as resp:
        reply: dict[str, Any] = await json_of(resp, 200)
        assert resp.headers["X-Caxton-Message-Id"]
        assert resp.headers["X-Caxton-Conversation-Id"] == reply["conversation_id"]
    return reply


# -- one node behind the guide's nginx ----------------------------------------------------------


def test_the_guides_cipher_list_stops_nginx(tmp_path: Path, cert: Certificate) -> None:
    """Why the config differs from the guide in ``ssl_ciphers``: the literal list is fatal."""
    block = fill(LEAST_CONN, SERVERS=fill(LEAST_CONN_SERVER, ADDRESS="127.0.0.1:9"))
    conf, _, _ = write_nginx_conf(tmp_path, block, cert)
    accepted = nginx_test(conf)
    assert accepted.returncode == 0, accepted.stderr
    conf, _, _ = write_nginx_conf(tmp_path, block, cert, ciphers=GUIDE_CIPHERS)
    refused = nginx_test(conf)
    assert refused.returncode != 0
    assert "no cipher match" in refused.stderr, refused.stderr


async def test_health_through_nginx(proxy: Nginx, cert: Certificate) -> None:
    async with session(proxy.url) as client, client.get("/health") as resp:
        assert await json_of(resp, 200) == {"status": "ok"}
    async with (
        session(proxy.tls_url) as client,
        client.get("/health", ssl=cert.client_context()) as resp,
    ):
        assert await json_of(resp, 200) == {"status": "ok"}


def test_tls_listener_negotiates_the_corrected_suite_and_http2(
    proxy: Nginx, cert: Certificate
) -> None:
    """``listen 443 ssl http2`` with TLS 1.2 forced: the SHA384 suite; ALPN offers h2."""
    ctx = cert.client_context(tls12=True)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", proxy.tls_port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() == "TLSv1.2"
        cipher = tls.cipher()
        assert cipher is not None
        assert cipher[0] == "ECDHE-RSA-AES256-GCM-SHA384"
        assert tls.selected_alpn_protocol() == "h2"


async def test_deploy_and_request_reply_through_nginx(proxy: Nginx) -> None:
    async with session(proxy.url) as client:
        agent = await deploy(client, "echo")
        assert agent["state"] == "running", agent
        # The module is larger than nginx's body buffer: it went through client_body_temp_path.
        assert "a client request body is buffered to a temporary file" in proxy.error_log()
        content = {"hello": "through nginx", "n": [1, 2.5, None]}
        reply = await ask(client, "echo", content)
        assert reply["content"] == content
        assert reply["sender"] == "echo"
        assert reply["performative"] == "inform"
        async with client.get("/api/v1/agents/echo") as resp:
            assert (await json_of(resp, 200))["name"] == "echo"


async def test_event_stream_and_heartbeats_through_nginx(proxy: Nginx) -> None:
    async with session(proxy.url) as client:
        await deploy(client, "echo-ws")
        async with client.ws_connect(
            "/api/v1/events", params={"agent": "echo-ws", "heartbeat": "1s"}
        ) as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello == {
                "type": "subscribed",
                "filters": {"agent": "echo-ws", "performative": None, "conversation": None},
                "heartbeat": 1.0,
            }
            message = {"receiver": "echo-ws", "performative": "request", "content": "hi"}
            async with client.post("/api/v1/messages", json=message) as resp:
                sent = await json_of(resp, 202)
            first = await next_event(ws, "message")
            second = await next_event(ws, "message")
            assert first["message_id"] == sent["message_id"]
            assert first["receiver"] == "echo-ws"
            assert second["sender"] == "echo-ws"
            assert second["performative"] == "inform"
            assert second["conversation_id"] == sent["conversation_id"]
            assert second["content"] == "hi"
            # With nothing to send, the node's heartbeat frames still come through nginx.
            beat = await next_event(ws, "heartbeat")
            assert beat["time"].endswith("Z")
            await ws.close()
            assert ws.close_code == aiohttp.WSCloseCode.OK


async def test_event_stream_over_the_tls_listener(proxy: Nginx, cert: Certificate) -> None:
    async with (
        session(proxy.tls_url) as client,
        client.ws_connect("/api/v1/events", ssl=cert.client_context()) as ws,
    ):
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "subscribed"
        message = {"receiver": "nobody-here", "performative": "inform"}
        async with client.post("/api/v1/messages", json=message, ssl=cert.client_context()) as resp:
            await json_of(resp, 202)
        dead = await next_event(ws, "dead_letter")
        assert dead["receiver"] == "nobody-here"


async def test_errors_keep_the_json_envelope_through_nginx(proxy: Nginx) -> None:
    async with session(proxy.url) as client:
        bad = {"receiver": "echo", "performative": "shout"}
        async with client.post("/api/v1/messages", json=bad) as resp:
            assert await error_code(resp, 400) == "INVALID_REQUEST"
        async with client.get("/api/v1/agents/nobody-here") as resp:
            assert await error_code(resp, 404) == "AGENT_NOT_FOUND"
        # nginx always sends `Connection: upgrade`; without `Upgrade` the node still says 426.
        async with client.get("/api/v1/events") as resp:
            assert await error_code(resp, 426) == "INVALID_REQUEST"
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await client.ws_connect("/api/v1/events", params={"performative": "shout"})
        assert caught.value.status == 400


async def test_health_is_left_out_of_the_access_log(proxy: Nginx) -> None:
    async with session(proxy.url) as client:
        async with client.get("/health", params={"probe": "lb"}) as resp:
            assert resp.status == 200
        async with client.get("/api/v1/agents", params={"probe": "lb"}) as resp:
            assert resp.status == 200

    async def logged() -> bool:
        return "GET /api/v1/agents?probe=lb " in proxy.access_log()

    await eventually(logged)
    assert "/health" not in proxy.access_log()


# -- two nodes: failover and the session affinity variants ---------------------------------------


async def test_requests_survive_a_stopped_node(
    tmp_path: Path, node: NodeProcess, cert: Certificate
) -> None:
    """least_conn + max_fails: a refused connection is retried on the other node."""
    with nodes(tmp_path / "nodes", 1) as (spare,):
        for each in (node, spare):
            async with session(each.url("api", "")) as direct:
                await deploy(direct, "echo-failover")
        block = upstream(LEAST_CONN, LEAST_CONN_SERVER, [node, spare])
        with run_nginx(tmp_path / "nginx", block, cert) as server:
            async with session(server.url) as client:
                for n in range(2):
                    assert (await ask(client, "echo-failover", n))["content"] == n
                code, stderr = spare.stop()
                assert code == 0, stderr
                started = time.monotonic()
                for n in range(6):
                    assert (await ask(client, "echo-failover", n))["content"] == n
                    async with client.get("/health") as resp:
                        assert await json_of(resp, 200) == {"status": "ok"}
                assert time.monotonic() - started < 5
            log = server.error_log()
            assert "Connection refused) while connecting to upstream" in log, log
            assert f'upstream: "http://{api_address(spare)}/' in log, log


async def test_ip_hash_keeps_a_client_on_the_node_with_its_agent(
    tmp_path: Path, pair: list[NodeProcess], cert: Certificate
) -> None:
    """The guide's ``ip_hash`` upstream: an agent deployed through nginx is found again."""
    with run_nginx(tmp_path, upstream(IP_HASH, AFFINITY_SERVER, pair), cert) as server:
        async with session(server.url) as client:
            await deploy(client, "sticky-echo")
            for n in range(6):
                assert (await ask(client, "sticky-echo", n))["content"] == n
    # It lives on exactly one of the two nodes, so every request went to that one.
    found = [each.get("api", "/api/v1/agents/sticky-echo")[0] for each in pair]
    assert sorted(found) == [200, 404]


async def test_consistent_hash_sends_one_uri_to_one_node(
    tmp_path: Path, pair: list[NodeProcess], cert: Certificate
) -> None:
    """The guide's ``hash $request_uri consistent`` upstream: a URI always meets one node."""
    async with session(pair[0].url("api", "")) as direct:
        await deploy(direct, "only-on-first")
    path = "/api/v1/agents/only-on-first"
    with run_nginx(tmp_path, upstream(CONSISTENT_HASH, AFFINITY_SERVER, pair), cert) as server:
        async with session(server.url) as client:
            statuses = set()
            for _ in range(8):
                async with client.get(path) as resp:
                    statuses.add(resp.status)
                    await resp.read()
    assert len(statuses) == 1, statuses
    assert statuses <= {200, 404}


async def test_least_conn_spreads_requests_over_both_nodes(
    tmp_path: Path, pair: list[NodeProcess], cert: Certificate
) -> None:
    """Without affinity, the same request meets both nodes (what the affinity variants fix)."""
    async with session(pair[0].url("api", "")) as direct:
        await deploy(direct, "spread-probe")
    block = upstream(LEAST_CONN, LEAST_CONN_SERVER, pair)
    with run_nginx(tmp_path, block, cert) as server:
        async with session(server.url) as client:
            statuses = []
            for _ in range(6):
                async with client.get("/api/v1/agents/spread-probe") as resp:
                    statuses.append(resp.status)
                    await resp.read()
    assert set(statuses) == {200, 404}, statuses


# -- the client's address behind nginx ----------------------------------------------------------

TRUSTING_NGINX = """
[security]
rate_limit_enabled = true
rate_limit_per_second = 0.1
rate_limit_burst = 3
trusted_proxies = ["127.0.0.1"]
"""


async def test_rate_limits_and_logs_see_each_client_behind_nginx(
    tmp_path: Path, cert: Certificate
) -> None:
    """With ``trusted_proxies``, the X-Forwarded-For nginx sets names the client, so one client
    using up its burst does not throttle another one behind the same nginx."""
    home = tmp_path / "node"
    home.mkdir()
    with NodeProcess(write_config(home, TRUSTING_NGINX)) as node:
        node.start()
        block = upstream(LEAST_CONN, LEAST_CONN_SERVER, [node])
        with run_nginx(tmp_path / "nginx", block, cert) as server:

            def client_from(address: str) -> aiohttp.ClientSession:
                connector = aiohttp.TCPConnector(local_addr=(address, 0))
                return aiohttp.ClientSession(server.url, timeout=TIMEOUT, connector=connector)

            async with client_from("127.0.0.2") as alice, client_from("127.0.0.3") as bob:
                statuses = []
                for _ in range(4):
                    async with alice.get("/api/v1/agents") as resp:
                        statuses.append(resp.status)
                assert statuses == [200, 200, 200, 429]
                async with alice.get("/api/v1/agents") as resp:
                    assert await error_code(resp, 429) == "RATE_LIMITED"
                async with bob.get("/api/v1/agents") as resp:
                    await json_of(resp, 200)
        node.stop()
    lines = [json.loads(line) for line in (home / "logs" / "caxton.log").read_text().splitlines()]
    remotes = {line.get("remote") for line in lines if line.get("path") == "/api/v1/agents"}
    assert remotes == {"127.0.0.2", "127.0.0.3"}
