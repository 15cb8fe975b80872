"""The deployment guide's HAProxy configuration in front of two real Caxton node processes.

The configuration below is the guide's "Load Balancer Configuration (HAProxy)" section copied
verbatim; `_adapted_config` changes only what a test on one machine must, each change asserted
to match the guide's text and explained where it is made. haproxy runs in the foreground
(``-db``) on free 127.0.0.1 ports and is always stopped; so are the nodes.

The second half runs the configuration docs/operations.md recommends ("Behind a reverse proxy
or load balancer"): the guide's plus the lines the docs add to ``defaults`` and the ``/ready``
health check. It checks what the docs claim of it: a node stopped under load loses no request,
a starting node gets none before it is ready, and with ``trusted_proxies`` each client behind
HAProxy has its own rate-limit bucket and is logged under its own address.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.nodeproc import NodeProcess, free_port, write_config
from tests.support import EXAMPLES, ROOT, message, tool, wait_until
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
#: The docs' `[networking] drain_delay` for these checks: above inter x fall + inter (0.6 s), so
#: haproxy marks a stopping node DOWN while it still serves, before its listener closes.
DRAIN_DELAY = 'drain_delay = "1s"'


def _haproxy() -> str:
    return tool("haproxy", "haproxy")


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


#: What docs/operations.md tells to add to the guide's `defaults` (its first line is the one
#: `_adapted_config` already adds), and the health check it recommends instead of `/health`.
DOCS_DEFAULTS = ("mode http", "option forwardfor", "option redispatch", "retries 3")
DOCS_HTTPCHK = "option httpchk GET /ready"


def _docs_haproxy_defaults() -> tuple[str, ...]:
    """The directives in docs/operations.md's HAProxy `defaults` block, comments dropped."""
    text = (ROOT / "docs" / "operations.md").read_text()
    marker = "**HAProxy** (the guide's `haproxy.cfg`). Add to `defaults`:"
    assert text.count(marker) == 1, f"docs/operations.md no longer has {marker!r}"
    block = text.split(marker, 1)[1].split("```", 2)[1]
    return tuple(line.split("#", 1)[0].strip() for line in block.strip().splitlines())


def _recommended_config(
    *, http_port: int, https_port: int, metrics_port: int, pem: Path, nodes: list[NodeProcess]
) -> str:
    """`_adapted_config` plus exactly what docs/operations.md recommends, nothing else."""
    assert _docs_haproxy_defaults() == DOCS_DEFAULTS, "docs/operations.md's HAProxy block changed"
    assert f"`{DOCS_HTTPCHK}`" in (ROOT / "docs" / "operations.md").read_text()
    cfg = _adapted_config(
        http_port=http_port,
        https_port=https_port,
        metrics_port=metrics_port,
        pem=pem,
        nodes=nodes,
    )
    added = "".join(f"    {directive}\n" for directive in DOCS_DEFAULTS)
    cfg = _replace(cfg, "defaults\n    mode http\n", f"defaults\n{added}")
    cfg = _replace(cfg, "    option httpchk GET /health\n", f"    {DOCS_HTTPCHK}\n")
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
    source: str = "127.0.0.1",
) -> Response:
    """One request on a fresh connection (so haproxy balances each one), from the loopback
    address ``source``; no redirects followed."""
    conn: http.client.HTTPConnection
    origin = (source, 0)
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=origin)
    else:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=10, context=tls, source_address=origin
        )
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
    tmp_path: Path, nodes: list[NodeProcess], pem: Path, *, recommended: bool = False
) -> tuple[Path, int, int, int]:
    """The guide's config (adapted), or with ``recommended`` the one docs/operations.md gives."""
    ports = free_port(), free_port(), free_port()
    build = _recommended_config if recommended else _adapted_config
    text = build(
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


def _api_port(node: NodeProcess) -> int:
    return int(node.url("api", "").rsplit(":", 1)[1])


def _start_nodes(
    stack: ExitStack, tmp_path: Path, extra: str = "", networking: str = ""
) -> list[NodeProcess]:
    """Nodes n1 and n2 (``extra`` appended to their configs, ``networking`` added to their
    ``[networking]``), each with echo deployed; the stack kills whatever is still running when
    it closes."""
    nodes = []
    for name in ("n1", "n2"):
        (tmp_path / name).mkdir()
        config = write_config(tmp_path / name, extra, networking=networking)
        node = stack.enter_context(NodeProcess(config))
        node.start(wait=False)
        nodes.append(node)
    for node in nodes:
        node.wait_ready()
    wasm = (EXAMPLES / "echo.wasm").read_bytes()
    for node in nodes:
        deployed = _request(
            _api_port(node),
            "POST",
            "/api/v1/agents?name=echo",
            body=wasm,
            content_type="application/wasm",
        )
        assert deployed.status == 201, deployed.body
    return nodes


def _start_haproxy(
    stack: ExitStack, tmp_path: Path, nodes: list[NodeProcess], *, recommended: bool
) -> Cluster:
    """haproxy in front of ``nodes``, answering (stopped when the stack closes)."""
    pem, ca = _self_signed_pem(tmp_path)
    cfg, http_port, https_port, metrics_port = _write_config(
        tmp_path, nodes, pem, recommended=recommended
    )
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

    def answers() -> bool:
        assert haproxy.proc is not None
        assert haproxy.proc.poll() is None, f"haproxy exited:\n{haproxy.output()}"
        return cluster.https("GET", "/health").status == 200

    wait_until(
        answers, 10, retry_on=(OSError,), what=lambda: f"haproxy answered:\n{haproxy.output()}"
    )
    return cluster


@contextmanager
def _cluster(
    tmp_path: Path, *, recommended: bool = False, extra: str = "", networking: str = ""
) -> Iterator[Cluster]:
    """Two nodes, each with the echo example deployed, behind haproxy with the guide's config
    (or, with ``recommended``, the docs' one); ``extra`` and ``networking`` go into the nodes'
    configs (see `_start_nodes`)."""
    with ExitStack() as stack:
        nodes = _start_nodes(stack, tmp_path, extra, networking)
        yield _start_haproxy(stack, tmp_path, nodes, recommended=recommended)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with _cluster(tmp_path_factory.mktemp("haproxy")) as running:
        yield running


def _configs_only(tmp_path: Path) -> tuple[list[NodeProcess], Path]:
    """Two nodes' configs (not started: `haproxy -c` needs addresses, not live servers) and a
    certificate file."""
    nodes = []
    for name in ("n1", "n2"):
        (tmp_path / name).mkdir()
        nodes.append(NodeProcess(write_config(tmp_path / name)))
    pem, _ = _self_signed_pem(tmp_path)
    return nodes, pem


def test_guide_config_is_valid_and_warning_free(tmp_path: Path) -> None:
    nodes, pem = _configs_only(tmp_path)
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


# --- The configuration docs/operations.md recommends ---------------------------------------

#: Concurrent clients in the load tests, each with its own keep-alive connections to haproxy.
LOAD_CLIENTS = 16
LOAD_TIMEOUT = aiohttp.ClientTimeout(total=15)


@dataclass(frozen=True)
class Outcome:
    """One request of the load: what was asked, when, and what came back."""

    client: int
    method: str
    conversation: str | None  # a POST's conversation id
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None: no HTTP answer at all (see error)
    error: str | None
    body: bytes

    @property
    def ok(self) -> bool:
        """A success: the agent list, or echo's reply to this very message."""
        if self.status != 200:
            return False
        if self.conversation is None:
            return b'"echo"' in self.body
        try:
            reply = json.loads(self.body)
        except ValueError:
            return False
        return isinstance(reply, dict) and (reply.get("sender"), reply.get("content")) == (
            "echo",
            {"n": self.conversation},
        )

    def describe(self, since: float) -> str:
        what = f"{self.method} {self.conversation or '/api/v1/agents'}"
        answer = self.status if self.error is None else self.error
        took = self.ended - self.started
        return f"{what} sent at {self.started - since:+.3f}s, after {took:.3f}s: {answer}"


async def _client(
    cluster: Cluster, client: int, stop: asyncio.Event, outcomes: list[Outcome]
) -> None:
    """Until ``stop``: POST a message to echo (waiting for the reply), GET the agents, again."""
    base = f"https://127.0.0.1:{cluster.https_port}"
    async with aiohttp.ClientSession(timeout=LOAD_TIMEOUT) as session:
        for n in itertools.count():
            if stop.is_set():
                return
            conversation = f"load-{client}-{n}" if n % 2 == 0 else None
            started = time.monotonic()
            status: int | None = None
            error: str | None = None
            body = b""
            try:
                if conversation is not None:
                    request = session.post(
                        f"{base}/api/v1/messages?wait=5s",
                        data=message("echo", {"n": conversation}, conversation_id=conversation),
                        headers={"Content-Type": "application/json"},
                        ssl=cluster.tls,
                    )
                else:
                    request = session.get(f"{base}/api/v1/agents", ssl=cluster.tls)
                async with request as resp:
                    body = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = repr(exc)
            method = "GET" if conversation is None else "POST"
            outcomes.append(
                Outcome(
                    client, method, conversation, started, time.monotonic(), status, error, body
                )
            )


async def _under_load(cluster: Cluster, during: Callable[[], Awaitable[None]]) -> list[Outcome]:
    """Every request `LOAD_CLIENTS` clients made through haproxy while ``during`` ran."""
    outcomes: list[Outcome] = []
    stop = asyncio.Event()
    clients = [
        asyncio.create_task(_client(cluster, i, stop, outcomes)) for i in range(LOAD_CLIENTS)
    ]
    try:
        await during()
    finally:
        stop.set()
        await asyncio.gather(*clients)
    return outcomes


def _sample(items: list[str], count: int = 20) -> list[str]:
    """Up to ``count`` of ``items``, spread evenly from the first to the last."""
    step = max(1, len(items) // count)
    return items[::step]


def _haproxy_errors(cluster: Cluster) -> list[str]:
    """haproxy's request log lines with a termination state other than ``----``."""
    return [
        line
        for line in cluster.haproxy.output().splitlines()
        if "caxton_frontend" in line and " - - " in line and " - - ---- " not in line
    ]


def _report(failed: list[Outcome], since: float, cluster: Cluster, what: str) -> str:
    errors = "\n".join(_haproxy_errors(cluster)) or "(none)"
    return (
        f"{len(failed)} request(s) failed ({what}):\n"
        + "\n".join(o.describe(since) for o in failed)
        + f"\nhaproxy's log lines with a termination state other than ----:\n{errors}"
    )


def test_recommended_config_is_the_guides_plus_the_docs_lines(tmp_path: Path) -> None:
    nodes, pem = _configs_only(tmp_path)
    ports = {"http_port": 1080, "https_port": 1443, "metrics_port": 1909}
    guide = _adapted_config(pem=pem, nodes=nodes, **ports).splitlines()
    recommended = _recommended_config(pem=pem, nodes=nodes, **ports).splitlines()
    # Exactly the docs' additions: three lines in `defaults`, and /ready checked, not /health.
    assert sorted(set(recommended) - set(guide)) == [
        "    option forwardfor",
        "    option httpchk GET /ready",
        "    option redispatch",
        "    retries 3",
    ]
    assert sorted(set(guide) - set(recommended)) == ["    option httpchk GET /health"]
    defaults = recommended[recommended.index("defaults") + 1 :][:4]
    assert defaults == [f"    {directive}" for directive in DOCS_DEFAULTS]

    cfg = _write_config(tmp_path, nodes, pem, recommended=True)[0]
    output = _check_config(cfg)
    assert "Configuration file is valid" in output
    assert "[WARNING]" not in output, output
    assert "[ALERT]" not in output, output


async def test_a_node_stopped_under_load_loses_no_request(tmp_path: Path) -> None:
    """SIGTERM to one node while clients keep sending: every request gets its answer.

    The clients keep their connections to haproxy alive, as real ones do. That matters: when
    a node closes a connection just as haproxy sends it a client's second or later request,
    haproxy answers nothing, logs nothing and closes the client's connection (the client is
    to retry, as on any keep-alive race); a client that does not retry a POST then loses it.
    The nodes' ``drain_delay`` (as the docs recommend) keeps a stopping node serving, with
    ``Connection: close``, until haproxy's /ready check has taken it out.
    """
    with _cluster(tmp_path, recommended=True, networking=DRAIN_DELAY) as cluster:
        stopping = cluster.nodes[0]
        marks: dict[str, float] = {}
        stopped: list[tuple[int, str]] = []

        async def stop_one_node() -> None:
            await asyncio.sleep(0.7)  # both nodes serve the load
            marks["sigterm"] = time.monotonic()
            stopped.append(await asyncio.to_thread(stopping.stop))  # SIGTERM, then its exit
            marks["exited"] = time.monotonic()
            await asyncio.sleep(0.8)  # the other node carries the load alone

        outcomes = await _under_load(cluster, stop_one_node)

        code, stderr = stopped[0]
        assert code == 0, stderr
        cluster.haproxy.wait_for("caxton_backend/caxton1 is DOWN", timeout=5)
        failed = [o for o in outcomes if not o.ok]
        assert not failed, _report(
            failed, marks["sigterm"], cluster, f"of {len(outcomes)}; times from SIGTERM"
        )
        before = [o for o in outcomes if o.ended < marks["sigterm"]]
        after = [o for o in outcomes if o.started > marks["exited"]]
        assert len(before) >= 20, len(before)
        assert len(after) >= 20, len(after)
        # Both nodes served requests (roundrobin); after the stop, node 2 serves everything.
        log = cluster.haproxy.output()
        assert "caxton_frontend~ caxton_backend/caxton1 " in log
        assert "caxton_frontend~ caxton_backend/caxton2 " in log
        conversations = [o.conversation for o in after if o.conversation is not None]
        for conversation in _sample(conversations):
            assert cluster.served_by(conversation) == [1], conversation


def _probe_until_ready(node: NodeProcess, statuses: list[int], timeout: float = 20.0) -> None:
    """Ask ``node`` directly for the agent list until it answers 200 (refusals skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            statuses.append(_request(_api_port(node), "GET", "/api/v1/agents").status)
        except OSError:
            time.sleep(0.002)
            continue
        if statuses[-1] == 200:
            return
    raise AssertionError(f"the node never answered 200 directly: {statuses}")


async def test_a_starting_node_gets_no_request_before_it_is_ready(tmp_path: Path) -> None:
    """A node started while clients send through haproxy: checked on /ready, it is given
    requests only once it can serve them, never while it still answers 503."""
    with ExitStack() as stack:
        nodes = _start_nodes(stack, tmp_path)
        starting = nodes[1]
        # Stopped, it keeps echo: when it starts again it listens first and restores echo
        # before it is ready, answering 503 UNAVAILABLE to the API meanwhile.
        code, stderr = starting.stop()
        assert code == 0, stderr
        cluster = _start_haproxy(stack, tmp_path, nodes, recommended=True)
        cluster.haproxy.wait_for("caxton_backend/caxton2 is DOWN", timeout=5)
        direct: list[int] = []  # what the starting node answers when asked directly
        marks: dict[str, float] = {}

        async def start_second_node() -> None:
            await asyncio.sleep(0.3)  # node 1 alone serves the load
            marks["start"] = time.monotonic()
            starting.start(wait=False)
            probe = asyncio.to_thread(_probe_until_ready, starting, direct)
            up = asyncio.to_thread(cluster.haproxy.wait_for, "caxton_backend/caxton2 is UP", 20)
            _, marks["up"] = await asyncio.gather(probe, up)
            await asyncio.sleep(0.6)  # both nodes serve the load

        outcomes = await _under_load(cluster, start_second_node)

        # The node did have a starting phase, in which it answered 503 to whoever asked it...
        assert 503 in direct, direct
        assert direct[-1] == 200, direct
        # ...and haproxy sent the clients none of those 503s, nor any other failure.
        failed = [o for o in outcomes if not o.ok]
        assert not failed, _report(
            failed, marks["start"], cluster, f"of {len(outcomes)}; times from the node's start"
        )
        # Once up, the new node takes its share of the load.
        late = [o.conversation for o in outcomes if o.started > marks["up"] and o.conversation]
        assert len(late) >= 10, len(late)
        holders = [cluster.served_by(conversation) for conversation in _sample(late)]
        assert [1] in holders, holders
        assert all(holder in ([0], [1]) for holder in holders), holders


#: Per-client rate limits on the nodes, haproxy (on 127.0.0.1) trusted to name the client. A
#: token every 100 s: nothing refills during the test.
RATE_LIMIT_BURST = 3
RATE_LIMITED = f"""
[security]
rate_limit_enabled = true
rate_limit_per_second = 0.01
rate_limit_burst = {RATE_LIMIT_BURST}
trusted_proxies = ["127.0.0.1"]
"""


def _access_log(node: NodeProcess, path: str) -> list[tuple[str, int]]:
    """(remote, status) of the node's access-log entries for ``path`` (written so far)."""
    logged = []
    for line in (node.config_path.parent / "logs" / "caxton.log").read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # a line still being written
            continue
        if entry.get("path") == path:
            logged.append((entry["remote"], entry["status"]))
    return logged


def test_each_client_behind_haproxy_has_its_own_rate_limit(tmp_path: Path) -> None:
    with _cluster(tmp_path, recommended=True, extra=RATE_LIMITED) as cluster:

        def ask(source: str) -> Response:
            return _request(
                cluster.https_port, "GET", "/api/v1/agents/echo", tls=cluster.tls, source=source
            )

        # roundrobin alternates between the nodes, each with its own buckets: 2 x burst
        # requests in a row use up this client's burst on both nodes...
        first = [ask("127.0.0.2").status for _ in range(2 * RATE_LIMIT_BURST)]
        assert first == [200] * (2 * RATE_LIMIT_BURST)
        for _ in range(2):  # ...so the next one on either node is refused
            limited = ask("127.0.0.2")
            assert limited.status == 429, limited
            error = limited.json()
            assert isinstance(error, dict)
            assert error["error"]["code"] == "RATE_LIMITED", error
            assert int(limited.headers["retry-after"]) >= 1, limited.headers
        # Another client, behind the same haproxy, has buckets of its own on both nodes.
        assert [ask("127.0.0.3").status for _ in range(2)] == [200, 200]
        assert ask("127.0.0.2").status == 429

        # Each node counted and logged the clients' addresses, never haproxy's 127.0.0.1.
        expected = sorted(
            [("127.0.0.2", 200)] * 2 * RATE_LIMIT_BURST
            + [("127.0.0.2", 429)] * 3
            + [("127.0.0.3", 200)] * 2
        )

        def all_logged() -> list[list[tuple[str, int]]] | None:
            logged = [_access_log(node, "/api/v1/agents/echo") for node in cluster.nodes]
            return logged if sorted(logged[0] + logged[1]) == expected else None

        logged = wait_until(all_logged, 5, what=f"the nodes logged {expected}")
        assert sorted(logged[0] + logged[1]) == expected, logged
        for entries in logged:
            assert {remote for remote, _ in entries} == {"127.0.0.2", "127.0.0.3"}, logged
            assert entries.count(("127.0.0.2", 200)) == RATE_LIMIT_BURST, logged
