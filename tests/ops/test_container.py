"""deploy/Dockerfile built and run for real with podman (Debian's), on the host's network.

The image is built from the checkout with the locally made base image
(``--build-arg BASE_IMAGE=localhost/debian:bookworm``, see tests/ops/podman.py), then one node
runs in a container as deploy/docker-compose.yml runs it: deploy/compose/production.toml
mounted read-only and named by ``CAXTON_CONFIG_PATH`` (only its ports made free ones on the
host's network, tracing and the drain delay off), its state on a named volume at
``/data``, ``JWT_SECRET`` from the environment, a read-only root file system. The test checks
what an operator relies on: health and readiness, a message answered, the process not root,
a clean stop on SIGTERM (exit 0, within the stop timeout), and after a restart, and after the
container is replaced by a new one on the same volume, the agent and its data still there.
It prints the image's size, the build time and the cold start to ``/ready``.

Then three containers run deploy/compose-cluster.yml's nodes with its compose/cluster.toml
(ports made distinct, since they share the host's network; the services' names resolve through
``--add-host``): they form one cluster, a message crosses from one node to another, and a
``podman kill`` of one is seen as dead by the other two.

Skipped, with the reason, only where containers cannot run at all (no root to set podman up,
or a container does not even start from the plain base image).
"""

from __future__ import annotations

import base64
import json
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.nodeproc import free_port
from tests.ops import podman as pm
from tests.support import EXAMPLES, ROOT

pytestmark = pytest.mark.slow

#: The image must stay under this (the goal in docs/operations.md).
MAX_IMAGE_BYTES = 250 * 1000 * 1000
#: podman's and Docker's default stop timeout: SIGTERM, then SIGKILL after this many seconds.
STOP_TIMEOUT = 10
JWT_SECRET = "container-test-secret-0123456789abcdef"


#: deploy/compose/production.toml, which docker-compose.yml mounts at /config.
COMPOSE_TOML = ROOT / "deploy" / "compose" / "production.toml"


def _replace(text: str, old: str, new: str, *, what: str = "compose/production.toml") -> str:
    return pm.replace_once(text, old, new, what=what)


def _node_config(directory: Path) -> tuple[Path, dict[str, int]]:
    """docker-compose.yml's configuration on free loopback ports (the container shares the
    host's network; on Compose's network it has its own), tracing off (no collector runs here)
    and no drain delay (a quicker stop); ``directory`` is mounted at /config."""
    ports = {name: free_port() for name in ("api", "metrics", "admin")}
    text = pm.listeners_on_loopback(COMPOSE_TOML.read_text(), ports, what="compose/production.toml")
    text = _replace(text, "enable_tracing = true", "enable_tracing = false")
    text = _replace(text, 'drain_delay = "7s"', 'drain_delay = "0s"')
    path = pm.readable_file(directory, "production.toml", text)
    return path, ports


def _run_node(name: str, config_dir: Path, data: str, ports: dict[str, int]) -> pm.Container:
    return pm.run(
        name,
        "--read-only",
        "-v",
        f"{config_dir}:/config:ro",
        "-v",
        f"{data}:/data",
        "-e",
        "CAXTON_CONFIG_PATH=/config/production.toml",
        "-e",
        "CAXTON_LOG_LEVEL=info",
        "-e",
        "CAXTON_METRICS_ENABLED=true",
        "-e",
        f"JWT_SECRET={JWT_SECRET}",
        "-e",
        f"CAXTON_HEALTH_URL=http://127.0.0.1:{ports['admin']}/health",
        command=("serve", "--examples"),
    )


def _stop(container: pm.Container) -> float:
    """`podman stop` (SIGTERM, SIGKILL after the timeout); asserts a clean exit 0."""
    start = time.monotonic()
    pm.podman("stop", "-t", str(STOP_TIMEOUT), container.name, timeout=STOP_TIMEOUT + 30)
    took = time.monotonic() - start
    state = container.state()
    logs = container.logs()
    assert state["ExitCode"] == 0, logs[-3000:]
    assert took < STOP_TIMEOUT, f"stop took {took:.1f} s: killed, not drained"
    assert '"message": "caxton stopped"' in logs.splitlines()[-1], logs[-2000:]
    return took


def _ask(api: str, token: str, receiver: str, content: object) -> dict[str, object]:
    body = json.dumps({"receiver": receiver, "performative": "request", "content": content})
    status, raw = pm.http_post(f"{api}/api/v1/messages?wait=10s", body.encode(), token=token)
    assert status == 200, raw
    reply = json.loads(raw)
    assert isinstance(reply, dict)
    assert reply["performative"] == "inform", reply
    return reply


def test_image_is_small_and_has_no_compiler(image: str, report: list[str]) -> None:
    size = pm.image_size(image)
    report.append(f"image size: {size / 1e6:.0f} MB ({size} bytes)")
    report.append(f"podman build (cached layers reused): {pm.BUILD_SECONDS[0]:.1f} s")
    assert size < MAX_IMAGE_BYTES
    probe = (
        "import shutil, caxton.runtime.sandbox._accel, caxton._examples;"
        "print([c for c in ('gcc', 'cc', 'clang', 'curl') if shutil.which(c)]);"
        "print(shutil.which('nats-server'))"
    )
    out = pm.podman("run", "--rm", "--entrypoint", "python3", image, "-c", probe).stdout
    found, nats = out.splitlines()
    assert found == "[]", f"the image has {found}"
    assert nats == "/opt/caxton/bin/nats-server"
    version = pm.podman("run", "--rm", "--entrypoint", nats, image, "--version").stdout
    assert version.startswith("nats-server: v")


def test_default_config_refuses_to_start_without_a_secret(image: str) -> None:
    """The image's own configuration turns authentication on: with no ``JWT_SECRET`` the node
    exits 2 at once and says what is missing, rather than serving an open API."""
    result = pm.podman("run", "--rm", image, check=False, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "JWT_SECRET is not set" in result.stderr


def test_node_in_a_container(image: str, tmp_path: Path, report: list[str]) -> None:
    config, ports = _node_config(tmp_path / "config")
    api = f"http://127.0.0.1:{ports['api']}"
    with pm.volume() as data:
        name = pm.unique("caxton-test-node")
        start = time.monotonic()
        container = _run_node(name, config.parent, data, ports)
        try:
            pm.wait_status(f"{api}/ready")
            cold = time.monotonic() - start
            report.append(f"cold start, podman run to /ready 200: {cold:.2f} s")
            assert pm.http_get(f"{api}/health")[0] == 200
            healthcheck = pm.podman("healthcheck", "run", name, check=False)
            assert healthcheck.returncode == 0, healthcheck.stdout + healthcheck.stderr

            # Not root: inside the container and as the host sees the process.
            assert container.exec("id", "-u").strip() == "10001"
            pid = container.state()["Pid"]
            status = Path(f"/proc/{pid}/status").read_text()
            uids = next(line for line in status.splitlines() if line.startswith("Uid:"))
            assert uids.split()[1:] == ["10001"] * 4, uids

            token = container.exec("caxton", "token", "create", "--subject", "test").strip()
            assert _ask(api, token, "echo", {"hello": "container"})["content"] == {
                "hello": "container"
            }
            wasm = base64.b64encode((EXAMPLES / "counter.wasm").read_bytes()).decode()
            deploy = json.dumps({"name": "keeper", "wasm": wasm}).encode()
            status_code, raw = pm.http_post(f"{api}/api/v1/agents", deploy, token=token)
            assert status_code == 201, raw
            for expected in (1, 2):
                assert _ask(api, token, "keeper", {})["content"] == {
                    "memory_count": expected,
                    "kv_count": expected,
                }

            # Restart: SIGTERM drains and exits 0; the same container starts again.
            report.append(f"podman stop (SIGTERM to exit 0): {_stop(container):.2f} s")
            pm.podman("start", name)
            pm.wait_status(f"{api}/ready")
            # A new instance (memory counter from 1), the stored counter kept.
            assert _ask(api, token, "keeper", {})["content"] == {"memory_count": 1, "kv_count": 3}
            _stop(container)
        finally:
            container.remove()

        # A new container on the same volume (what an upgrade of the image does).
        container = _run_node(pm.unique("caxton-test-node"), config.parent, data, ports)
        try:
            pm.wait_status(f"{api}/ready")
            started = [
                json.loads(line)
                for line in container.logs().splitlines()
                if '"message": "node started"' in line
            ]
            assert started[0]["restored"] == 12, started  # the 11 examples and keeper
            assert started[0]["hot_path"] == "c", "the C hot path is not in the image"
            token = container.exec("caxton", "token", "create", "--subject", "test").strip()
            assert _ask(api, token, "keeper", {})["content"] == {"memory_count": 1, "kv_count": 4}
            _stop(container)
        finally:
            container.remove()


#: deploy/compose/cluster.toml, which compose-cluster.yml gives its three nodes.
COMPOSE_CLUSTER_TOML = ROOT / "deploy" / "compose" / "cluster.toml"
CLUSTER_SECRET = "container-cluster-secret-0123456789abcdef"


def _cluster_replace(text: str, old: str, new: str) -> str:
    return _replace(text, old, new, what="compose/cluster.toml")


def _cluster_config(ports: list[dict[str, int]], me: int) -> str:
    """compose/cluster.toml for node ``me`` on the host's network. On the Compose network each
    container has its own address, so all use the same ports; here they share 127.0.0.1 and
    each node gets its own ports instead. The service names still resolve (``--add-host``)."""
    text = pm.on_loopback(
        COMPOSE_CLUSTER_TOML.read_text(),
        ports[me],
        advertise="${NODE_NAME}:7946",
        seeds={f"caxton-node-{i}": node["route"] for i, node in enumerate(ports, start=1)},
        what="compose/cluster.toml",
    )
    # No collector runs here, and a quick stop: tracing off and no drain delay.
    text = _cluster_replace(text, "enable_tracing = true", "enable_tracing = false")
    return _cluster_replace(text, 'drain_delay = "7s"', 'drain_delay = "0s"')


def _wait_members(api: str, token: str, expected: dict[str, str], within: float) -> float:
    start = time.monotonic()
    seen: dict[str, str] = {}
    while time.monotonic() - start < within:
        seen = pm.members(api, token)
        if all(seen.get(name) == state for name, state in expected.items()):
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{api} sees {seen}, not {expected} after {within} s")


def test_three_containers_form_a_cluster(image: str, tmp_path: Path, report: list[str]) -> None:
    """compose-cluster.yml's three nodes, as containers of the image: they mesh through their
    service names as seeds, a message sent to node 1 reaches an agent on node 2 and its reply
    comes back, and a `podman kill` of node 3 is seen as dead by the other two."""
    names = [f"caxton-node-{i}" for i in (1, 2, 3)]
    ports = [{key: free_port() for key in ("api", "metrics", "admin", "route")} for _ in names]
    apis = [f"http://127.0.0.1:{p['api']}" for p in ports]
    add_hosts = [arg for name in names for arg in ("--add-host", f"{name}:127.0.0.1")]
    containers: list[pm.Container] = []
    with ExitStack() as stack:
        for i, name in enumerate(names):
            config_dir = tmp_path / name
            pm.readable_file(config_dir, "cluster.toml", _cluster_config(ports, i))
            data = stack.enter_context(pm.volume())
            container = pm.run(
                pm.unique(name),
                "--read-only",
                *add_hosts,
                "-v",
                f"{config_dir}:/config:ro",
                "-v",
                f"{data}:/data",
                "-e",
                "CAXTON_CONFIG_PATH=/config/cluster.toml",
                "-e",
                f"JWT_SECRET={JWT_SECRET}",
                "-e",
                f"CLUSTER_SECRET={CLUSTER_SECRET}",
                "-e",
                f"NODE_NAME={name}",
            )
            stack.callback(container.remove)
            containers.append(container)
        for api in apis:
            pm.wait_status(f"{api}/ready")
        token = containers[0].exec("caxton", "token", "create", "--subject", "test").strip()
        alive = {name: "alive" for name in names}
        for api in apis:
            _wait_members(api, token, alive, within=20)

        wasm = base64.b64encode((EXAMPLES / "echo.wasm").read_bytes()).decode()
        deploy = json.dumps({"name": "far-echo", "wasm": wasm, "node": names[1]}).encode()
        status_code, raw = pm.http_post(f"{apis[1]}/api/v1/agents", deploy, token=token)
        assert status_code == 201, raw
        assert json.loads(raw)["node"] == names[1]

        def crossed() -> bool:
            body = json.dumps(
                {"receiver": "far-echo", "performative": "request", "content": {"from": 1}}
            )
            code, answer = pm.http_post(
                f"{apis[0]}/api/v1/messages?wait=5s", body.encode(), token=token
            )
            return code == 200 and json.loads(answer)["content"] == {"from": 1}

        # Node 1 learns of the agent within a gossip round; then the message crosses.
        deadline = time.monotonic() + 10
        while not crossed():
            assert time.monotonic() < deadline, "no reply from the agent on node 2"
            time.sleep(0.2)

        pm.podman("kill", containers[2].name)
        killed = time.monotonic()
        for api in apis[:2]:
            _wait_members(api, token, {names[2]: "dead"}, within=15)
        report.append(
            f"podman kill of a node to dead on both others: {time.monotonic() - killed:.1f} s"
        )

        # The others stop cleanly; the survivor sees the one stopped as left.
        _stop(containers[1])
        _wait_members(apis[0], token, {names[1]: "left"}, within=5)
        _stop(containers[0])
