"""deploy/Dockerfile built and run for real with podman (Debian's), on the host's network.

The image is built from the checkout with the locally made base image
(``--build-arg BASE_IMAGE=localhost/debian:bookworm``, see tests/ops/podman.py), then one node
runs in a container the way docs/operations.md ("Containers") says: its own configuration
mounted read-only and named by ``CAXTON_CONFIG_PATH``, its state on a named volume at
``/data``, ``JWT_SECRET`` from the environment, a read-only root file system. The test checks
what an operator relies on: health and readiness, a message answered, the process not root,
a clean stop on SIGTERM (exit 0, within the stop timeout), and after a restart, and after the
container is replaced by a new one on the same volume, the agent and its data still there.
It prints the image's size, the build time and the cold start to ``/ready``.

Skipped, with the reason, only where containers cannot run at all (no root to set podman up,
or a container does not even start from the plain base image).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nodeproc import free_port
from tests.ops import podman as pm
from tests.support import EXAMPLES

pytestmark = pytest.mark.slow

#: The image must stay under this (the goal in docs/operations.md).
MAX_IMAGE_BYTES = 250 * 1000 * 1000
#: podman's and Docker's default stop timeout: SIGTERM, then SIGKILL after this many seconds.
STOP_TIMEOUT = 10
JWT_SECRET = "container-test-secret-0123456789abcdef"


#: Seconds the module's build took (layers cached from earlier runs), for the report.
_BUILD_SECONDS: list[float] = []


@pytest.fixture(scope="module")
def image() -> str:
    try:
        pm.prepare()
    except pm.Unavailable as exc:
        pytest.skip(str(exc))
    _BUILD_SECONDS.append(pm.build())
    return pm.IMAGE


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Iterator[list[str]]:
    """Lines printed at the end of the test, past pytest's capture (the measured figures)."""
    lines: list[str] = []
    yield lines
    with capsys.disabled():
        for line in lines:
            print(f"\n[container] {line}", end="")
        print()


def _node_config(directory: Path) -> tuple[Path, dict[str, int]]:
    """A node configuration on free loopback ports (the container shares the host's network),
    state in the /data volume; ``directory`` is mounted at /config."""
    ports = {name: free_port() for name in ("api", "metrics", "admin")}
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)  # the container's user (10001) reads it
    path = directory / "node.toml"
    path.write_text(
        f"""
[networking]
bind_address = "127.0.0.1:{ports["api"]}"
metrics_address = "127.0.0.1:{ports["metrics"]}"
admin_address = "127.0.0.1:{ports["admin"]}"

[coordination]
local_state_path = "/data/local.db"

[observability]
log_format = "json"

[security]
auth_enabled = true
jwt_secret = "${{JWT_SECRET}}"
"""
    )
    path.chmod(0o644)
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
        "CAXTON_CONFIG_PATH=/config/node.toml",
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
    report.append(f"podman build (cached layers reused): {_BUILD_SECONDS[0]:.1f} s")
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
            token = container.exec("caxton", "token", "create", "--subject", "test").strip()
            assert _ask(api, token, "keeper", {})["content"] == {"memory_count": 1, "kv_count": 4}
            _stop(container)
        finally:
            container.remove()
