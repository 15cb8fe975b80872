"""`caxton debug bundle FILE` against real node processes: every part is in the tarball, no
secret is anywhere in it, and a node that is down still gives a bundle that says so."""

from __future__ import annotations

import base64
import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from caxton.cli import cli
from caxton.cli._bundle_parts import secret_masker
from caxton.config import Config
from caxton.config.schema import CoordinationConfig, Secret, SecurityConfig
from caxton.security import TokenIssuer
from tests.nodeproc import NodeProcess, free_port, write_config
from tests.support import ROOT, example, wait_until

pytestmark = pytest.mark.slow

JWT_SECRET = "jwt-Secret-for-the-bundle-test-0123456789abcdef"
CLUSTER_SECRET = "cluster-Secret-for-the-bundle-test-9876543210"
#: Every member a bundle of a clustered node that answers holds.
MEMBERS = {
    "manifest.json",
    "config.toml",
    "logs/caxton.log",
    "metrics.txt",
    "agents.json",
    "members.json",
    "status.json",
    "versions.json",
}


@pytest.fixture(autouse=True)
def _no_caller_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CAXTON_") or name == "JWT_SECRET":
            monkeypatch.delenv(name)


def clustered_config(directory: Path) -> Path:
    """A one-node cluster with auth and a cluster secret; state and log file under `directory`."""
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    return write_config(
        directory,
        f'\n[security]\nauth_enabled = true\njwt_secret = "{JWT_SECRET}"\n',
        coordination=f'cluster_enabled = true\nbind_addr = "127.0.0.1:{port}"\n'
        f'seeds = ["127.0.0.1:{port}"]\nprobe_interval = "200ms"\n'
        f'cluster_secret = "{CLUSTER_SECRET}"\n',
    )


def bundle(*args: str) -> Result:
    result = CliRunner().invoke(cli, ["debug", "bundle", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def extract(path: Path, into: Path) -> dict[str, Path]:
    """The bundle's members (below its one top directory) -> extracted files."""
    with tarfile.open(path, "r:gz") as tar:
        names = tar.getnames()
        tops = {name.split("/", 1)[0] for name in names}
        assert len(tops) == 1, names
        assert all(member.isfile() for member in tar.getmembers())
        tar.extractall(into, filter="data")
    assert tops.pop().startswith("caxton-debug-"), tops
    return {name.split("/", 1)[1]: into / name for name in names}


def manifest(files: dict[str, Path]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(files["manifest.json"].read_text())
    return data


def parts(files: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return {part["name"]: part for part in manifest(files)["parts"]}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    config = clustered_config(tmp_path / "node")
    with NodeProcess(config).start(timeout=30) as running:
        yield running


def test_a_bundle_of_a_running_clustered_node_has_every_part_and_no_secret(
    node: NodeProcess, tmp_path: Path
) -> None:
    token = TokenIssuer(JWT_SECRET, default_expiry=600).create("bundle-test")
    api = node.url("api", "")
    wasm = tmp_path / "echo.wasm"
    wasm.write_bytes(example("echo"))
    deploy = CliRunner().invoke(
        cli, ["agent", "deploy", str(wasm), "--server", api, "--token", token, "--name", "echo"]
    )
    assert deploy.exit_code == 0, deploy.stderr
    # A line holding the cluster secret (the node's own masker knows the JWT secret only).
    log = node.config_path.parent / "logs" / "caxton.log"
    wait_until(log.exists, 5, what="the log file exists")
    with log.open("a") as file:
        file.write(json.dumps({"message": f"route secret {CLUSTER_SECRET}"}) + "\n")

    target = tmp_path / "out" / "bug.tar.gz"
    target.parent.mkdir()
    result = bundle(str(target), "--config", str(node.config_path), "--token", token)
    assert result.exit_code == 0, result.output
    assert f"wrote {target}" in result.stdout
    files = extract(target, tmp_path / "x")
    assert set(files) == MEMBERS
    assert {name: part["status"] for name, part in parts(files).items()} == {
        name: "collected"
        for name in ("config", "logs", "metrics", "agents", "members", "status", "versions")
    }
    assert manifest(files)["node"] == "answered"

    # No secret anywhere: not the JWT secret, not the cluster secret, not the API token.
    for name, path in files.items():
        text = path.read_bytes()
        for secret in (JWT_SECRET, CLUSTER_SECRET, token):
            assert secret.encode() not in text, (name, secret[:12])
        assert base64.b64encode(JWT_SECRET.encode()) not in text
    config = files["config.toml"].read_text()
    assert 'jwt_secret = "********"' in config
    assert 'cluster_secret = "********"' in config
    assert "cluster_enabled = true" in config
    assert "route secret ********" in files["logs/caxton.log"].read_text()

    agents = json.loads(files["agents.json"].read_text())
    assert [agent["name"] for agent in agents["agents"]] == ["echo"]
    members = json.loads(files["members.json"].read_text())
    assert [member["state"] for member in members["members"]] == ["alive"]
    metrics = files["metrics.txt"].read_text()
    assert 'caxton_cluster_members{state="alive"} 1.0' in metrics
    assert json.loads(files["status.json"].read_text())["ready"] is True
    versions = json.loads(files["versions.json"].read_text())
    assert {"caxton", "python", "wasmtime", "sqlite", "nats-server", "os"} <= set(versions)
    assert versions["nats-server"].startswith("nats-server: v"), versions


def test_the_bundle_signs_its_own_token_from_the_configuration(
    node: NodeProcess, tmp_path: Path
) -> None:
    target = tmp_path / "own.tar.gz"
    result = bundle(str(target), "--config", str(node.config_path))
    assert result.exit_code == 0, result.output
    files = extract(target, tmp_path / "x")
    assert parts(files)["agents"]["status"] == "collected"


def test_a_node_that_is_down_still_gives_a_bundle_that_says_so(tmp_path: Path) -> None:
    config = clustered_config(tmp_path / "node")
    with NodeProcess(config).start(timeout=30) as running:
        running.stop()  # it ran (its log file exists), and is down now
    target = tmp_path / "down.tar.gz"
    result = bundle(str(target), "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "the node is not reachable (" in result.stdout
    files = extract(target, tmp_path / "x")
    assert set(files) == {"manifest.json", "config.toml", "logs/caxton.log", "versions.json"}
    found = parts(files)
    for name in ("config", "logs", "versions"):
        assert found[name]["status"] == "collected", found[name]
    for name in ("metrics", "agents", "members", "status"):
        assert found[name]["status"] == "failed", found[name]
        assert "refused" in found[name]["detail"], found[name]
    note = manifest(files)["node"]
    assert note.startswith("not reachable (GET http://127.0.0.1:")
    assert "local parts only (config, logs, versions)" in note
    for path in files.values():
        assert JWT_SECRET.encode() not in path.read_bytes()


def test_the_log_is_bounded_to_whole_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "caxton.log"
    log.parent.mkdir()
    log.write_text("".join(f"line {n:05d}\n" for n in range(2000)))  # 22 kB
    config = write_config(tmp_path)  # its log_file is that file; no node runs
    target = tmp_path / "b.tar.gz"
    result = bundle(str(target), "--config", str(config), "--log-bytes", "1000")
    assert result.exit_code == 0, result.output
    files = extract(target, tmp_path / "x")
    kept = files["logs/caxton.log"].read_text()
    assert len(kept) <= 1000
    assert kept.startswith("line ")
    assert kept.endswith("line 01999\n")
    assert "the last" in parts(files)["logs"]["detail"]


def test_rotated_logs_fill_what_the_active_file_leaves(tmp_path: Path) -> None:
    # Just after a rotation the active file is nearly empty: the newest rotated file follows.
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "caxton.log").write_text("today 1\ntoday 2\n")
    for age, day in enumerate(["2026-12-03", "2026-12-02", "2026-12-01"]):
        rotated = logs / f"caxton.log.{day}"
        rotated.write_text("".join(f"{day} line {n:04d}\n" for n in range(500)))  # 11 kB
        stamp = time.time() - 86400 * (age + 1)
        os.utime(rotated, (stamp, stamp))
    config = write_config(tmp_path)
    target = tmp_path / "b.tar.gz"
    result = bundle(str(target), "--config", str(config), "--log-bytes", "4000")
    assert result.exit_code == 0, result.output
    files = extract(target, tmp_path / "x")
    assert files["logs/caxton.log"].read_text() == "today 1\ntoday 2\n"
    newest = files["logs/caxton.log.2026-12-03"].read_text()
    assert newest.endswith("2026-12-03 line 0499\n")
    assert newest.startswith("2026-12-03 line ")
    assert len(newest) + 16 <= 4000
    assert "logs/caxton.log.2026-12-02" not in files
    detail = parts(files)["logs"]["detail"]
    assert (
        "older rotated files not included: caxton.log.2026-12-02, caxton.log.2026-12-01" in detail
    )


def test_no_log_file_is_said_in_the_bundle(tmp_path: Path) -> None:
    config = tmp_path / "caxton.toml"
    config.write_text(f'[coordination]\nlocal_state_path = "{tmp_path / "data" / "local.db"}"\n')
    target = tmp_path / "b.tar.gz"
    result = bundle(str(target), "--config", str(config), "--server", "127.0.0.1:1")
    assert result.exit_code == 0, result.output
    logs = parts(extract(target, tmp_path / "x"))["logs"]
    assert logs["status"] == "skipped"
    assert "none found" in logs["detail"]
    assert "log_file" in logs["detail"]


def test_a_configuration_that_does_not_load_is_named_in_the_bundle(tmp_path: Path) -> None:
    config = tmp_path / "caxton.toml"
    config.write_text('[networking]\nbind_adress = "127.0.0.1:1"\n')  # a typo
    target = tmp_path / "b.tar.gz"
    result = bundle(str(target), "--config", str(config), "--server", "127.0.0.1:1")
    assert result.exit_code == 0, result.output
    files = extract(target, tmp_path / "x")
    found = parts(files)
    assert found["config"]["status"] == "failed"
    assert "bind_adress" in found["config"]["detail"]
    assert found["versions"]["status"] == "collected"


@pytest.mark.parametrize("where", ["missing", "file"])
def test_a_file_that_cannot_be_written_is_a_clear_error(tmp_path: Path, where: str) -> None:
    if where == "missing":
        target = tmp_path / "no" / "such" / "dir" / "b.tar.gz"
        expected = f"the directory {target.parent} does not exist"
    else:
        (tmp_path / "plain").write_text("")
        target = tmp_path / "plain" / "b.tar.gz"
        expected = f"the directory {target.parent} is not a directory"
    result = bundle(str(target), "--server", "127.0.0.1:1")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == f"caxton: cannot write the bundle: {expected}"
    assert not target.exists()
    assert list(tmp_path.rglob("*.tar.gz")) == []


def test_the_agent_view_keeps_its_spellings() -> None:
    # `caxton debug NAME`, `--agent-id ID` and `debug agent NAME` are one command; no agent
    # given is still a usage error.
    for args in (["debug"], ["debug", "agent"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert "--agent-id ID or as NAME" in result.stderr
    listed = CliRunner().invoke(cli, ["debug", "--help"])
    assert listed.exit_code == 0
    assert "bundle" in listed.stdout
    assert "agent" in listed.stdout


def test_docs_list_every_member() -> None:
    docs = (ROOT / "docs" / "observability.md").read_text()
    section = docs.split("## Debug bundle", 1)[1].split("\n## ", 1)[0]
    for member in MEMBERS:
        shown = "logs/<log file>" if member.startswith("logs/") else member
        assert f"`{shown}`" in section, member


def test_a_server_that_is_not_a_url_is_bad_usage(tmp_path: Path) -> None:
    target = tmp_path / "b.tar.gz"
    result = bundle(str(target), "--server", "ftp://node:21")
    assert result.exit_code == 2
    assert result.stderr.startswith("caxton: --server 'ftp://node:21'"), result.stderr
    assert not target.exists()


def test_the_masker_knows_every_secret_of_the_configuration() -> None:
    config = Config(
        security=SecurityConfig(jwt_secret=Secret(JWT_SECRET)),
        coordination=CoordinationConfig(
            cluster_enabled=True, nats_url="nats://caxton:Nats-Pa55word@nats.example:4222"
        ),
    )
    masker = secret_masker(config, "the-api-token-value")
    line = f"{JWT_SECRET} Nats-Pa55word the-api-token-value {CLUSTER_SECRET}"
    assert masker.mask(line) == f"******** ******** ******** {CLUSTER_SECRET}"
    clustered = Config(coordination=CoordinationConfig(cluster_secret=Secret(CLUSTER_SECRET)))
    assert secret_masker(clustered, None).mask(line).endswith(" ********")
