"""The container image's size and a node's cold start in a container; prints JSON.

    python bench/bench_container.py [--runs 5]

As root on Debian 12: makes podman and the base image ready (deploy/local-base-image.sh, as
tests/ops/test_container.py does), builds deploy/Dockerfile (cached layers reused), then
`--runs` times starts a fresh container on a fresh volume, the node on its own loopback ports
(host network, a configuration mounted read-only as docs/operations.md shows), and stops it.
Every container and volume it made is removed before it exits.

* ``image_bytes``: the image's size as `podman images` reports it (goal: under 250 MB).
* ``cold_start_s``: from `podman run -d` to the first 200 from ``/ready`` (polled every 20 ms).
* ``stop_s``: `podman stop` (SIGTERM) until the container has exited (with code 0).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's tests/ helpers

from tests.nodeproc import free_port
from tests.ops import podman as pm

CONFIG = """
[networking]
bind_address = "127.0.0.1:{api}"
metrics_address = "127.0.0.1:{metrics}"
admin_address = "127.0.0.1:{admin}"

[coordination]
local_state_path = "/data/local.db"

[security]
auth_enabled = true
jwt_secret = "${{JWT_SECRET}}"
"""


def one_run(directory: Path) -> tuple[float, float]:
    """(seconds from `podman run` to /ready 200, seconds `podman stop` took) of a fresh node."""
    api, metrics, admin = free_port(), free_port(), free_port()
    (directory / "node.toml").write_text(CONFIG.format(api=api, metrics=metrics, admin=admin))
    (directory / "node.toml").chmod(0o644)
    with pm.volume("caxton-bench-data") as data:
        name = pm.unique("caxton-bench")
        started = time.monotonic()
        container = pm.run(
            name,
            "--read-only",
            "-v",
            f"{directory}:/config:ro",
            "-v",
            f"{data}:/data",
            "-e",
            "CAXTON_CONFIG_PATH=/config/node.toml",
            "-e",
            "JWT_SECRET=bench-secret-0123456789abcdef0123456789",
        )
        try:
            pm.wait_status(f"http://127.0.0.1:{api}/ready")
            cold = time.monotonic() - started
            stopping = time.monotonic()
            pm.podman("stop", "-t", "10", name, timeout=60)
            stop = time.monotonic() - stopping
            code = container.state()["ExitCode"]
            if code != 0:
                raise SystemExit(f"the node exited {code}:\n{container.logs()[-2000:]}")
        finally:
            container.remove()
    return cold, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    try:
        pm.prepare()
    except pm.Unavailable as exc:
        raise SystemExit(f"bench_container: {exc}") from None
    build_s = pm.build()
    colds: list[float] = []
    stops: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        directory.chmod(0o755)
        for _ in range(args.runs):
            cold, stop = one_run(directory)
            colds.append(cold)
            stops.append(stop)

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "median": round(statistics.median(values), 3),
            "min": round(min(values), 3),
            "max": round(max(values), 3),
        }

    print(
        json.dumps(
            {
                "machine": platform.machine(),
                "runs": args.runs,
                "image_bytes": pm.image_size(),
                "build_s": round(build_s, 1),
                "cold_start_s": summary(colds),
                "stop_s": summary(stops),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
