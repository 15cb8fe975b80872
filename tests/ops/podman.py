"""Build deploy/Dockerfile with podman and run containers from it, for tests/ops and bench.

No registry is reachable here, so the base image is made locally by deploy/local-base-image.sh
(as root: it installs podman, buildah, runc and debootstrap from Debian if missing, writes the
``containers.conf`` podman needs on these machines, and debootstraps
``localhost/debian:bookworm``). Containers use the host's network, so each one gets its own
free ports on 127.0.0.1. Every container and volume made here has a unique name and is removed
by whoever made it.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import ROOT

SCRIPT = ROOT / "deploy" / "local-base-image.sh"
WORK = Path(os.environ.get("CAXTON_CTR_WORK", "/var/tmp/caxton-ctr"))
CONTAINERS_CONF = WORK / "containers.conf"
BASE_IMAGE = "localhost/debian:bookworm"
IMAGE = "localhost/caxton:test"
#: The CA bundle pip inside the build trusts (the host's), when the host has one.
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
#: Seconds each build of this run took (tests/ops/conftest.py's `image`), for the report.
BUILD_SECONDS: list[float] = []
#: podman without systemd logs these for every container with a HEALTHCHECK; harmless.
_NOISE = "unable to get systemd connection"


class Unavailable(Exception):
    """Containers cannot run on this machine at all (the message says why)."""


def _env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def clean(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if _NOISE not in line)


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS`` with this machine's containers.conf; raise with its output on
    failure when ``check``."""
    result = subprocess.run(
        ["podman", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    result.stderr = clean(result.stderr)
    if check and result.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


def prepare() -> None:
    """Make podman and the base image ready, or raise `Unavailable` saying why they cannot be.

    Runs deploy/local-base-image.sh when podman, its containers.conf or the base image is
    missing (it needs root), then proves that a container starts at all.
    """
    ready = (
        shutil.which("podman") is not None
        and CONTAINERS_CONF.exists()
        and podman("image", "exists", BASE_IMAGE, check=False).returncode == 0
    )
    if not ready:
        if os.geteuid() != 0:
            raise Unavailable(
                "podman or the base image is missing, and making them needs root: run "
                "deploy/local-base-image.sh as root (scripts/test does)"
            )
        setup = subprocess.run(
            ["nice", "-n", "19", "bash", str(SCRIPT)],
            env={**os.environ, "WORK": str(WORK)},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if setup.returncode != 0:
            raise AssertionError(f"{SCRIPT} failed:\n{setup.stdout[-3000:]}{setup.stderr}")
    probe = podman("run", "--rm", BASE_IMAGE, "true", check=False, timeout=60)
    if probe.returncode != 0:
        raise Unavailable(
            f"this machine cannot run containers: `podman run --rm {BASE_IMAGE} true` "
            f"exited {probe.returncode}: {probe.stderr.strip()[-500:]}"
        )


def build(tag: str = IMAGE) -> float:
    """Build deploy/Dockerfile into ``tag`` (layers cached between runs); the seconds it took."""
    args = [
        "build",
        "--pull=never",
        "--format",
        "docker",
        "--network=host",
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "-f",
        str(ROOT / "deploy" / "Dockerfile"),
    ]
    if HOST_CA.exists():
        args += ["--secret", f"id=pip_ca,src={HOST_CA}"]
    tags = (tag, f"{tag}-build")
    before = {i for i in map(_image_id, tags) if i is not None}
    start = time.monotonic()
    podman(*args, "-t", tag, str(ROOT), timeout=900)
    took = time.monotonic() - start
    # The build stage is named too (from the cache: a second). The images these two names
    # had before are then removed (when nothing else uses them), so that repeated runs keep
    # only this build's layers, which the next build reuses.
    podman(*args, "--target", "build", "-t", tags[1], str(ROOT), timeout=900)
    for old in before - set(map(_image_id, tags)):
        podman("rmi", old, check=False)
    return took


def _image_id(name: str) -> str | None:
    result = podman("image", "inspect", name, "--format", "{{.Id}}", check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def image_size(tag: str = IMAGE) -> int:
    """The image's size in bytes, as `podman images` reports it."""
    return int(podman("image", "inspect", tag, "--format", "{{.Size}}").stdout)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextmanager
def volume(prefix: str = "caxton-test-data") -> Iterator[str]:
    """A named volume, removed afterwards."""
    name = unique(prefix)
    podman("volume", "create", name)
    try:
        yield name
    finally:
        podman("volume", "rm", "-f", name, check=False)


@dataclass
class Container:
    """One container of the image, by name; `remove` stops it and takes it away."""

    name: str

    def inspect(self) -> dict[str, object]:
        data = json.loads(podman("container", "inspect", self.name).stdout)
        assert isinstance(data, list)
        found = data[0]
        assert isinstance(found, dict)
        return found

    def state(self) -> dict[str, object]:
        state = self.inspect()["State"]
        assert isinstance(state, dict)
        return state

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *command: str) -> str:
        return podman("exec", self.name, *command).stdout

    def remove(self) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)


def run(name: str, *args: str, image: str = IMAGE, command: tuple[str, ...] = ()) -> Container:
    """``podman run -d --network=host ARGS IMAGE COMMAND`` named ``name``."""
    podman("run", "-d", "--name", name, "--network=host", *args, image, *command)
    return Container(name)


def http_get(
    url: str,
    *,
    token: str | None = None,
    timeout: float = 5,
    context: ssl.SSLContext | None = None,
) -> tuple[int, bytes]:
    """(status, body) of a GET; (0, b"") when nothing answers."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def http_post(
    url: str,
    body: bytes,
    *,
    token: str,
    timeout: float = 15,
    context: ssl.SSLContext | None = None,
) -> tuple[int, bytes]:
    """(status, body) of a JSON POST with a token."""
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_status(
    url: str,
    status: int = 200,
    *,
    within: float = 60,
    context: ssl.SSLContext | None = None,
    token: str | None = None,
) -> float:
    """Poll ``url`` every 20 ms until it answers ``status``; the seconds that took."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if http_get(url, timeout=2, context=context, token=token)[0] == status:
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"{url} did not answer {status} within {within} s")


def replace_once(text: str, old: str, new: str, *, what: str) -> str:
    """``text`` with its one ``old`` replaced (fails, naming ``what``, unless there is one)."""
    assert text.count(old) == 1, f"{what} no longer has exactly one {old!r}"
    return text.replace(old, new)


#: (key, the address the shipped configs give it, the name of its port in ``ports``).
LISTENERS = (
    ("bind_address", "0.0.0.0:8080", "api"),
    ("metrics_address", "0.0.0.0:9090", "metrics"),
    ("admin_address", "127.0.0.1:8081", "admin"),
    ("bind_addr", "0.0.0.0:7946", "route"),
)


def listeners_on_loopback(text: str, ports: dict[str, int], *, what: str) -> str:
    """Each listener named in ``ports`` (api, metrics, admin, route) moved to its own port on
    127.0.0.1 (containers on the host network share it)."""
    for key, old, port in LISTENERS:
        if port in ports:
            new = f'{key} = "127.0.0.1:{ports[port]}"'
            text = replace_once(text, f'{key} = "{old}"', new, what=what)
    return text


def on_loopback(
    text: str,
    ports: dict[str, int],
    *,
    advertise: str,
    seeds: dict[str, int],
    what: str,
) -> str:
    """A clustered node's config moved to this host's loopback, on its own ``ports`` (api,
    metrics, admin, route): containers on the host network share 127.0.0.1, where on their
    own network each would have its address and the usual ports. ``advertise``: the
    ``host:7946`` its ``advertise_addr`` names (its port becomes the route port);
    ``seeds``: each seed ``host`` named with port 7946 -> that node's route port."""
    text = listeners_on_loopback(text, ports, what=what)
    host = advertise.rsplit(":", 1)[0]
    text = replace_once(
        text,
        f'advertise_addr = "{advertise}"',
        f'advertise_addr = "{host}:{ports["route"]}"',
        what=what,
    )
    for seed, route in seeds.items():
        text = replace_once(text, f'"{seed}:7946"', f'"{seed}:{route}"', what=what)
    return text


def members(api: str, token: str, context: ssl.SSLContext | None = None) -> dict[str, str]:
    """Each cluster member's state, as node ``api`` sees it."""
    status, raw = http_get(f"{api}/api/v1/cluster/members", token=token, context=context)
    assert status == 200, raw
    return {m["name"]: m["state"] for m in json.loads(raw)["members"]}


def readable_file(directory: Path, name: str, text: str) -> Path:
    """``directory/name`` holding ``text``, both readable by the image's user (10001), for a
    directory mounted into a container."""
    directory.mkdir(mode=0o755, exist_ok=True)
    directory.chmod(0o755)  # whatever the umask made of it
    path = directory / name
    path.write_text(text)
    path.chmod(0o644)
    return path
