"""`caxton agent ...` against a real node process: tables, JSON, errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from click.testing import CliRunner, Result

from caxton.cli import cli
from tests.nodeproc import NodeProcess, free_port, write_config
from tests.support import EXAMPLES, wat

pytestmark = pytest.mark.slow


# caxton_init logs a warning, then returns 7: the deploy fails with that line in the details.
_GRUMPY_WAT = """
(module
  (import "caxton" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "cannot start today")
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0))
  (func (export "caxton_init") (result i32)
    (call $log (i32.const 2) (i32.const 16) (i32.const 18))
    (i32.const 7)))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("agent-cli")
    with NodeProcess(write_config(directory)).start() as node:
        yield node.url("api", "")


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("modules")
    files = {
        "grumpy": bytes(wasmtime.wat2wasm(_GRUMPY_WAT)),
        "nop": wat("nop"),
        "bad-import": wat("bad_import"),
        "text": b"not a module at all",
    }
    paths = {name: directory / f"{name}.wasm" for name in files}
    for name, data in files.items():
        paths[name].write_bytes(data)
    return paths


def run(server: str, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["agent", *args], env={"CAXTON_SERVER": server})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def run_json(server: str, *args: str) -> Any:
    result = run(server, *args, "--output", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_deploy_list_show_and_remove(server: str) -> None:
    echo = str(EXAMPLES / "echo.wasm")
    result = run(server, "deploy", echo, "--name", "echo-a", "--env", "A=1", "--memory", "4MB")
    assert result.exit_code == 0, result.stderr
    assert "deployed echo-a: version 1, running" in result.stdout

    info = run_json(server, "deploy", echo, "--name", "echo-b", "-e", "X=y", "--grant-dir")
    assert (info["name"], info["env"], info["state"]) == ("echo-b", {"X": "y"}, "running")
    assert info["grants"]["data_dir"]

    result = run(server, "list")
    assert result.exit_code == 0, result.stderr
    assert "NAME" in result.stdout
    assert "echo-a" in result.stdout
    assert "echo-b" in result.stdout
    page = run_json(server, "list", "--limit", "1", "--offset", "1")
    assert [a["name"] for a in page["agents"]] == ["echo-b"]
    assert (page["total"], page["limit"], page["offset"]) == (2, 1, 1)
    assert "2-2 of 2 agents" in run(server, "list", "--limit", "1", "--offset", "1").stdout

    result = run(server, "show", "echo-a")
    assert result.exit_code == 0, result.stderr
    assert "A=1" in result.stdout
    assert "4.0 MiB" in result.stdout
    assert run_json(server, "show", "echo-a")["limits"]["memory_bytes"] == 4 * 1024 * 1024

    for name in ("echo-a", "echo-b"):
        result = run(server, "remove", name, "--yes")
        assert result.exit_code == 0, result.stderr
        assert f"removed {name}" in result.stdout
    assert run_json(server, "list")["total"] == 0
    assert "no agents" in run(server, "list").stdout


def test_upgrade_rollback_stop_start_logs(server: str, modules: dict[str, Path]) -> None:
    assert run(server, "deploy", str(modules["nop"]), "--name", "life").exit_code == 0
    info = run_json(server, "upgrade", "life", str(EXAMPLES / "echo.wasm"))
    assert (info["version"], info["versions"]) == (2, [1, 2])
    result = run(server, "rollback", "life", "1")
    assert result.exit_code == 0, result.stderr
    assert "version 1" in result.stdout
    assert run_json(server, "upgrade", "life", "--version", "2")["version"] == 2

    result = run(server, "stop", "life")
    assert (result.exit_code, result.stdout.strip()) == (0, "life: stopped")
    assert run_json(server, "show", "life")["state"] == "stopped"
    assert run_json(server, "start", "life")["state"] == "running"

    logs = run_json(server, "logs", "life", "-n", "5")
    assert logs["name"] == "life"
    assert isinstance(logs["lines"], list)
    assert run(server, "logs", "life").exit_code == 0
    assert run(server, "remove", "life", "-y").exit_code == 0


def test_api_errors_exit_1_with_the_server_message(server: str, modules: dict[str, Path]) -> None:
    result = run(server, "show", "nobody")
    assert result.exit_code == 1
    assert result.stderr.startswith("caxton: ")
    assert "nobody" in result.stderr
    assert result.stdout == ""

    result = run(server, "deploy", str(modules["text"]), "--name", "junk")
    assert result.exit_code == 1
    assert result.stderr.startswith("caxton: ")

    result = run(server, "deploy", str(modules["bad-import"]), "--name", "importer")
    assert result.exit_code == 1
    assert "env.foo" in result.stderr

    result = run(server, "deploy", str(modules["grumpy"]), "--name", "grumpy")
    assert result.exit_code == 1
    assert "agent log:" in result.stderr
    assert "cannot start today" in result.stderr

    result = run(server, "deploy", str(modules["nop"]), "--name", "Bad_Name")
    assert result.exit_code == 1
    assert "name" in result.stderr

    assert run(server, "deploy", str(modules["nop"]), "--name", "dup").exit_code == 0
    result = run(server, "deploy", str(modules["nop"]), "--name", "dup")
    assert result.exit_code == 1
    assert "dup" in result.stderr
    for args in (
        ["stop", "ghost"],
        ["start", "ghost"],
        ["logs", "ghost"],
        ["rollback", "dup", "9"],
    ):
        assert run(server, *args).exit_code == 1, args
    assert run(server, "remove", "dup", "--yes").exit_code == 0


def test_bad_usage_exits_2(server: str, modules: dict[str, Path], tmp_path: Path) -> None:
    nop = str(modules["nop"])
    cases = [
        ["deploy", nop],  # no --name
        ["deploy", str(tmp_path / "missing.wasm"), "--name", "x"],
        ["deploy", nop, "--name", "x", "--env", "novalue"],
        ["deploy", nop, "--name", "x", "--memory", "lots"],
        ["deploy", nop, "--name", "x", "--fuel", "0"],
        ["upgrade", "x"],  # neither FILE nor --version
        ["upgrade", "x", nop, "--version", "1"],
        ["rollback", "x", "zero"],
        ["list", "--limit", "0"],
        ["remove", "x"],  # no --yes and stdin is not a terminal
        ["show", "x", "--output", "yaml"],
    ]
    for args in cases:
        result = run(server, *args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
    assert run_json(server, "list")["total"] == 0


def test_unreachable_server_exits_1() -> None:
    result = run(f"http://127.0.0.1:{free_port()}", "list")
    assert result.exit_code == 1
    assert "cannot reach" in result.stderr


def test_real_process_exit_codes_and_json(server: str, modules: dict[str, Path]) -> None:
    def caxton(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "caxton", "agent", *args, "--server", server],
            capture_output=True,
            text=True,
            timeout=30,
        )

    done = caxton("deploy", str(EXAMPLES / "counter.wasm"), "--name", "counter", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["name"] == "counter"
    listed = caxton("list", "--output", "json")
    assert listed.returncode == 0
    assert [a["name"] for a in json.loads(listed.stdout)["agents"]] == ["counter"]
    missing = caxton("show", "nope")
    assert missing.returncode == 1
    assert missing.stderr.startswith("caxton: ")
    assert caxton("remove", "counter", "--yes").returncode == 0
